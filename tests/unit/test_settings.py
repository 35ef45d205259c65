"""Settings: env > config/instance.yaml > defaults; bad input names file, line and key."""

import re
from pathlib import Path

import pytest
import yaml

from agnes.errors import StartupError
from agnes.settings import ENV_VARS, FILE_KEYS, SECRET_ENV_VARS, Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "instance.yaml.example"


def write_config(data_dir: Path, text: str) -> Path:
    path = data_dir / "config" / "instance.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_error(env: dict[str, str]) -> str:
    with pytest.raises(StartupError) as info:
        Settings.load(env)
    assert info.value.code == "config_invalid"
    return info.value.message


def test_defaults_without_a_file(tmp_path: Path) -> None:
    s = Settings.load({"DATA_DIR": str(tmp_path)})
    assert s.instance.name == "Agnes"
    assert (s.server.host, s.server.port, s.server.log_level) == ("127.0.0.1", 8000, "info")
    assert s.server.trusted_proxies == () and s.server.max_request_body_mb == 512
    assert s.auth.access_token_ttl_seconds == 3600 and s.auth.min_password_length == 12
    assert (s.auth.login_free_failures, s.auth.login_max_backoff_seconds) == (5, 900)
    assert (s.health.disk_warn_free_mb, s.health.disk_fail_free_mb) == (1024, 100)
    assert s.jobs.redis_url is None and s.secrets.jwt_secret_key is None
    assert s.sources == () and s.warnings == ()
    assert s.config_path == tmp_path / "config" / "instance.yaml"


def test_paths_are_absolute_and_derived(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.load({})
    assert s.data_dir == tmp_path / "data" and s.data_dir.is_absolute()
    assert s.state_dir == tmp_path / "data" / "state"
    assert s.control_db_path == s.state_dir / "agnes.sqlite"
    assert s.backups_dir == s.state_dir / "backups"
    assert (s.extracts_dir.name, s.analytics_dir.name, s.inbox_dir.name, s.uploads_dir.name) == (
        "extracts", "analytics", "inbox", "uploads")
    assert s.export_config_path == s.data_dir / "config" / "instance.yaml"


def test_empty_file_and_empty_sections_mean_defaults(tmp_path: Path) -> None:
    write_config(tmp_path, "# nothing yet\n")
    assert Settings.load({"DATA_DIR": str(tmp_path)}).server.port == 8000
    write_config(tmp_path, "server:\n  # port: 9000\nsources:\n")
    s = Settings.load({"DATA_DIR": str(tmp_path)})
    assert s.server.port == 8000 and s.sources == () and s.warnings == ()


def test_env_beats_file_beats_default(tmp_path: Path) -> None:
    write_config(tmp_path, "instance:\n  name: From file\nserver:\n  port: 9000\n  log_level: debug\n")
    s = Settings.load({"DATA_DIR": str(tmp_path), "AGNES_PORT": "9100"})
    assert s.server.port == 9100  # env
    assert s.server.log_level == "debug" and s.instance.name == "From file"  # file
    assert s.server.host == "127.0.0.1"  # default
    assert Settings.load({"DATA_DIR": str(tmp_path), "AGNES_PORT": ""}).server.port == 9000  # empty = unset


def test_secrets_and_redis_come_from_env_and_are_not_shown(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path), "JWT_SECRET_KEY": "j" * 40, "SESSION_SECRET": "s" * 40,
           "AGNES_ENCRYPTION_KEY": "e" * 40, "AGNES_SETUP_TOKEN": "t" * 40, "REDIS_URL": "redis://:pw@r:6379/0"}
    s = Settings.load(env)
    assert s.secrets.jwt_secret_key == "j" * 40 and s.secrets.session_secret == "s" * 40
    assert s.secrets.encryption_key == "e" * 40 and s.secrets.setup_token == "t" * 40
    assert s.jobs.redis_url == "redis://:pw@r:6379/0"
    assert "jjjj" not in repr(s) and "pw@" not in repr(s)


def test_bad_yaml_syntax_names_file_and_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, "server:\n  port: 8000\n  host: [127.0.0.1\nauth: {}\n")
    msg = load_error({"DATA_DIR": str(tmp_path)})
    assert str(path) in msg and "invalid YAML" in msg
    assert re.search(r"line [3-5]\b", msg)


def test_wrong_type_names_file_line_and_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, "instance:\n  name: x\n\nserver:\n  host: 0.0.0.0\n\n  port: eighty\n")
    msg = load_error({"DATA_DIR": str(tmp_path)})
    assert msg == f"{path} line 7: server.port: expected int, got str 'eighty'"


def test_quoted_int_in_yaml_is_a_wrong_type(tmp_path: Path) -> None:
    write_config(tmp_path, 'server:\n  port: "8000"\n')
    assert "line 2: server.port: expected int, got str '8000'" in load_error({"DATA_DIR": str(tmp_path)})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server:\n  port: 0\n", "line 2: server.port: expected int >= 1, got 0"),
        ("server:\n  port: 70000\n", "line 2: server.port: expected int <= 65535, got 70000"),
        ("auth:\n  min_password_length: 4\n", "line 2: auth.min_password_length: expected int >= 8, got 4"),
        ("auth:\n  access_token_ttl_seconds: 10\n", "line 2: auth.access_token_ttl_seconds: expected int >= 60"),
        ("server:\n  log_level: loud\n", "line 2: server.log_level: expected one of debug, info, warning, error"),
        ("server:\n  trusted_proxies: [10.0.0.1, nope]\n", "line 2: server.trusted_proxies[1]: 'nope' is not"),
        ("health:\n  disk_warn_free_mb: 10\n  disk_fail_free_mb: 20\n", "line 3: health.disk_fail_free_mb"),
        ("server: 8000\n", "line 1: server: expected object, got int 8000"),
        ("sources:\n  - data_source: sample\n  - keboola_token: x\n", "line 3: sources[1]: every source needs"),
        ("sources:\n  - data_source: sample\n  - just a string\n", "line 3: sources[1]: expected object"),
    ],
)
def test_out_of_range_and_bad_shapes_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write_config(tmp_path, text)
    msg = load_error({"DATA_DIR": str(tmp_path)})
    assert msg.startswith(str(path)) and expected in msg


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    write_config(tmp_path, "# comment\n- server\n- port\n")
    assert "line 2: the top level must be a mapping" in load_error({"DATA_DIR": str(tmp_path)})


def test_duplicate_key_is_an_error_not_last_wins(tmp_path: Path) -> None:
    write_config(tmp_path, "server:\n  port: 8000\n  port: 9000\n")
    assert "line 3: duplicate key 'server.port' (first at line 2)" in load_error({"DATA_DIR": str(tmp_path)})


def test_unknown_key_is_a_warning_not_an_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, "server:\n  port: 9000\n  colour: red\nfuture_section:\n  x: 1\n")
    s = Settings.load({"DATA_DIR": str(tmp_path)})
    assert s.server.port == 9000
    assert s.warnings == (
        f"{path} line 3: unknown key 'server.colour' ignored",
        f"{path} line 5: unknown key 'future_section.x' ignored",
    )


def test_secret_in_file_is_ignored_with_a_warning(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        "secrets:\n  jwt_secret_key: abc\njobs:\n  redis_url: redis://:pw@x\nauth:\n  admin_password: hunter2\n",
    )
    s = Settings.load({"DATA_DIR": str(tmp_path)})
    assert s.secrets.jwt_secret_key is None and s.jobs.redis_url is None
    jwt, redis, password = s.warnings
    assert "line 2: 'secrets.jwt_secret_key' ignored" in jwt and "set JWT_SECRET_KEY" in jwt
    assert "line 4: 'jobs.redis_url' ignored" in redis and "REDIS_URL" in redis
    assert "line 6: 'auth.admin_password' ignored" in password and "environment" in password
    assert not any("abc" in w or "hunter2" in w or "pw@" in w for w in s.warnings)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("AGNES_PORT", "x", "AGNES_PORT='x': expected an integer"),
        ("AGNES_PORT", "0", "AGNES_PORT='0': expected int >= 1"),
        ("AGNES_ACCESS_TOKEN_TTL", "1h", "AGNES_ACCESS_TOKEN_TTL='1h': expected an integer"),
        ("AGNES_LOG_LEVEL", "loud", "AGNES_LOG_LEVEL='loud': expected one of debug, info, warning, error"),
        ("AGNES_TRUSTED_PROXIES", "10.0.0.1,proxy", "AGNES_TRUSTED_PROXIES='10.0.0.1,proxy': 'proxy' is not"),
    ],
)
def test_bad_env_value_names_the_variable(tmp_path: Path, name: str, value: str, expected: str) -> None:
    assert load_error({"DATA_DIR": str(tmp_path), name: value}).startswith(expected)


def test_env_beats_a_good_file_but_a_bad_file_still_fails(tmp_path: Path) -> None:
    write_config(tmp_path, "server:\n  port: eighty\n")
    assert "server.port" in load_error({"DATA_DIR": str(tmp_path), "AGNES_PORT": "9000"})


def test_agnes_config_overrides_the_file_location(tmp_path: Path) -> None:
    write_config(tmp_path, "server:\n  port: 1111\n")  # the default location, not read
    other = tmp_path / "elsewhere.yaml"
    other.write_text("server:\n  port: 2222\n", encoding="utf-8")
    s = Settings.load({"DATA_DIR": str(tmp_path), "AGNES_CONFIG": str(other)})
    assert s.config_path == other and s.server.port == 2222


def test_agnes_config_naming_a_missing_file_refuses_to_start(tmp_path: Path) -> None:
    """Set explicitly, a typo must not silently run the instance on defaults (the default path stays optional)."""
    write_config(tmp_path, "server:\n  port: 1111\n")  # the default file exists but is not what was asked for
    missing = tmp_path / "none.yaml"
    with pytest.raises(StartupError) as info:
        Settings.load({"DATA_DIR": str(tmp_path), "AGNES_CONFIG": str(missing)})
    err = info.value
    assert err.code == "config_invalid"
    assert "AGNES_CONFIG" in err.message and str(missing) in err.message and "does not exist" in err.message
    assert "unset AGNES_CONFIG" in err.hint and "instance.yaml.example" in err.hint
    (tmp_path / "config" / "instance.yaml").unlink()
    assert Settings.load({"DATA_DIR": str(tmp_path)}).server.port == 8000  # no AGNES_CONFIG: the file is optional


def test_trusted_proxies_parsing(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path), "AGNES_TRUSTED_PROXIES": " 10.0.0.1, 172.16.0.0/12 ,,::1 "}
    assert Settings.load(env).server.trusted_proxies == ("10.0.0.1", "172.16.0.0/12", "::1")
    assert Settings.load({**env, "AGNES_TRUSTED_PROXIES": "*"}).server.trusted_proxies == ("*",)
    write_config(tmp_path, "server:\n  trusted_proxies:\n    - 127.0.0.1\n    - 10.0.0.0/8\n")
    assert Settings.load({"DATA_DIR": str(tmp_path)}).server.trusted_proxies == ("127.0.0.1", "10.0.0.0/8")
    write_config(tmp_path, "server:\n  trusted_proxies: 127.0.0.1\n")  # a list, not a string
    assert "line 2: server.trusted_proxies: expected array" in load_error({"DATA_DIR": str(tmp_path)})


def test_sources_are_kept_raw_with_lines_and_env_references(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "sources:\n  - data_source: sample\n\n  - data_source: keboola\n    keboola_token: ${KEBOOLA_STORAGE_TOKEN}\n",
    )
    s = Settings.load({"DATA_DIR": str(tmp_path)})
    assert s.sources == (
        {"data_source": "sample"},
        {"data_source": "keboola", "keboola_token": "${KEBOOLA_STORAGE_TOKEN}"},
    )
    assert s.source_lines == (2, 4) and s.source_origin(1) == f"{path} line 4"


def test_example_file_loads_without_warnings(tmp_path: Path) -> None:
    s = Settings.load({"DATA_DIR": str(tmp_path), "AGNES_CONFIG": str(EXAMPLE)})
    assert s.warnings == ()
    assert s.server.port == 8000 and [x["data_source"] for x in s.sources] == ["sample", "keboola"]


def test_example_file_documents_every_key_and_variable() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    in_example = {f"{section}.{key}" for section, keys in data.items() if isinstance(keys, dict) for key in keys}
    assert set(FILE_KEYS) <= in_example
    assert "sources" in data
    for name in ENV_VARS:
        assert name in text, f"{name} is not documented in {EXAMPLE.name}"
    assert "Required keys: NONE" in text


def test_env_table_is_complete() -> None:
    paths = {path for path, _ in ENV_VARS.values()}
    assert set(FILE_KEYS) <= paths
    assert {"data_dir", "config_path", "jobs.redis_url", "secrets.jwt_secret_key", "secrets.session_secret",
            "secrets.encryption_key", "secrets.setup_token"} <= paths
    assert SECRET_ENV_VARS <= set(ENV_VARS)
    assert all(desc for _, desc in ENV_VARS.values())


def test_sync_settings_from_file_and_env(tmp_path: Path) -> None:
    assert Settings.load({"DATA_DIR": str(tmp_path)}).sync.timeout_seconds == 3600
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "instance.yaml").write_text("sync:\n  timeout_seconds: 120\n  concurrency: 1\n")
    s = Settings.load({"DATA_DIR": str(tmp_path)})
    assert (s.sync.timeout_seconds, s.sync.concurrency) == (120, 1)
    s = Settings.load({"DATA_DIR": str(tmp_path), "AGNES_SYNC_TIMEOUT": "900"})
    assert s.sync.timeout_seconds == 900
    with pytest.raises(StartupError, match="AGNES_SYNC_TIMEOUT='5'"):
        Settings.load({"DATA_DIR": str(tmp_path), "AGNES_SYNC_TIMEOUT": "5"})


def test_query_settings_from_file_and_env(tmp_path: Path) -> None:
    s = Settings.load({"DATA_DIR": str(tmp_path)})
    assert (s.query.timeout_seconds, s.query.max_rows, s.query.memory_cap) == (30, 100_000, "auto")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "instance.yaml").write_text("query:\n  timeout_seconds: 5\n  memory_limit: 1GB\n")
    s = Settings.load({"DATA_DIR": str(tmp_path), "AGNES_QUERY_CONCURRENCY": "2", "AGNES_QUERY_MEMORY_CAP": "off"})
    assert (s.query.timeout_seconds, s.query.memory_limit, s.query.concurrency, s.query.memory_cap) == (
        5, "1GB", 2, "off")
    with pytest.raises(StartupError, match=r"AGNES_QUERY_MEMORY_LIMIT='lots'.*not a size"):
        Settings.load({"DATA_DIR": str(tmp_path), "AGNES_QUERY_MEMORY_LIMIT": "lots"})
    (tmp_path / "config" / "instance.yaml").write_text("query:\n  memory_cap: huge\n")
    with pytest.raises(StartupError, match=r"instance.yaml line 2: query.memory_cap: 'huge' is not a size"):
        Settings.load({"DATA_DIR": str(tmp_path)})


def test_build_identity_comes_from_the_environment_and_the_channel_is_checked(tmp_path: Path) -> None:
    s = Settings.load({"DATA_DIR": str(tmp_path), "AGNES_VERSION": "2026.04.3", "AGNES_CHANNEL": "stable",
                       "AGNES_COMMIT": "abc1234"})
    assert (s.build.version, s.build.channel, s.build.commit) == ("2026.04.3", "stable", "abc1234")
    assert s.env_setting("AGNES_CHANNEL") == "stable"
    plain = Settings.load({"DATA_DIR": str(tmp_path), "AGNES_CHANNEL": ""})
    assert plain.build.channel == "dev" and plain.build.commit == "unknown" and plain.build.version
    with pytest.raises(StartupError) as info:
        Settings.load({"DATA_DIR": str(tmp_path), "AGNES_CHANNEL": "beta"})
    assert info.value.code == "config_invalid" and "AGNES_CHANNEL='beta'" in info.value.message
    assert "dev, stable" in info.value.message and "build arg AGNES_CHANNEL" in info.value.hint
    write_config(tmp_path, "release:\n  version: 2026.04.3\n")  # never from the file
    assert "set AGNES_VERSION" in Settings.load({"DATA_DIR": str(tmp_path)}).warnings[0]


@pytest.mark.parametrize("url", ["garbage", "ftp://x", "https://", "file:///etc/passwd", "http://[::1"])
def test_release_manifest_url_must_be_http(tmp_path: Path, url: str) -> None:
    with pytest.raises(StartupError) as info:
        Settings.load({"DATA_DIR": str(tmp_path), "AGNES_RELEASE_MANIFEST_URL": url})
    assert info.value.message == f"AGNES_RELEASE_MANIFEST_URL={url!r}: {url!r} is not an http(s) URL"
    assert "http:// or https://" in info.value.hint and "empty to turn the check off" in info.value.hint
    write_config(tmp_path, f"release:\n  manifest_url: '{url}'\n")
    assert "instance.yaml line 2: release.manifest_url" in load_error({"DATA_DIR": str(tmp_path)})


def test_release_manifest_url_accepts_http_and_empty_means_off(tmp_path: Path) -> None:
    url = "https://github.com/keboola/agnes-the-ai-analyst/releases/download/release-manifest/releases.json"
    assert Settings.load({"DATA_DIR": str(tmp_path), "AGNES_RELEASE_MANIFEST_URL": url}).release.manifest_url == url
    assert Settings.load({"DATA_DIR": str(tmp_path), "AGNES_RELEASE_MANIFEST_URL": ""}).release.manifest_url is None
    write_config(tmp_path, "release:\n  manifest_url: ''\n")
    assert Settings.load({"DATA_DIR": str(tmp_path)}).release.manifest_url == ""


def test_keboola_settings_from_env_and_file_and_every_source_fallback_is_declared(tmp_path: Path) -> None:
    from agnes.services.source_types import SOURCE_TYPES

    fallbacks = {spec.fallback_env for t in SOURCE_TYPES.values() for spec in (*t.options, *t.secrets)
                 if spec.fallback_env}
    assert fallbacks and fallbacks <= set(ENV_VARS)  # the server reads no variable behind Settings' back
    s = Settings.load({"DATA_DIR": str(tmp_path), "KEBOOLA_STORAGE_TOKEN": "kbc-secret",
                       "KEBOOLA_STACK_URL": "https://connection.keboola.com",
                       "AGNES_KEBOOLA_S3_ENDPOINT_URL": "http://127.0.0.1:5000"})
    assert s.env_setting("KEBOOLA_STORAGE_TOKEN") == "kbc-secret" and "kbc-secret" not in repr(s.secrets)
    assert s.keboola.stack_url == s.env_setting("KEBOOLA_STACK_URL") == "https://connection.keboola.com"
    assert (s.keboola.s3_endpoint_url, s.keboola.gcs_endpoint_url) == ("http://127.0.0.1:5000", None)
    assert Settings.load({"DATA_DIR": str(tmp_path)}).env_setting("KEBOOLA_STORAGE_TOKEN") is None
    write_config(tmp_path, "keboola:\n  stack_url: https://eu.keboola.com\n  storage_token: nope\n")
    s = Settings.load({"DATA_DIR": str(tmp_path)})
    assert s.env_setting("KEBOOLA_STACK_URL") == "https://eu.keboola.com"
    assert s.secrets.keboola_storage_token is None and any("secret" in w for w in s.warnings)  # never from the file
