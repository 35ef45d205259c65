"""Settings: environment > optional provisioning file (config/instance.yaml) > defaults.

Read once at start-up into one frozen `Settings`. A malformed file or a value of
the wrong type stops start-up naming the file, line and key (or the variable):
a silent fallback would run an instance on settings nobody chose. Unknown keys
only warn, so an older image still starts on a newer file after a rollback.
Secrets (and REDIS_URL, which may hold a password) come from the environment only.
"""

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

import msgspec
import yaml

from agnes.errors import StartupError
from agnes.settings_query import QuerySettings, check_query_settings
from agnes.version import CHANNELS, BuildInfo, __version__

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]


def _masked_repr(self: msgspec.Struct) -> str:
    """Settings get logged; secret values must never be."""
    shown = ", ".join(f"{f}={'<set>' if getattr(self, f) else None}" for f in self.__struct_fields__)
    return f"{type(self).__name__}({shown})"


def _masked_rich_repr(self: msgspec.Struct) -> Any:  # rich would otherwise print the values
    return ((f, "<set>" if getattr(self, f) else None) for f in self.__struct_fields__)


class InstanceSettings(msgspec.Struct, frozen=True, kw_only=True):
    name: NonEmpty = "Agnes"


class ServerSettings(msgspec.Struct, frozen=True, kw_only=True):
    host: NonEmpty = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8000
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    trusted_proxies: tuple[str, ...] = ()  # IPs / CIDRs / "*" whose X-Forwarded-* headers we believe
    max_request_body_mb: Positive = 512
    max_upload_mb: Positive = 512  # CSV uploads (POST /api/admin/uploads) get their own limit


class AuthSettings(msgspec.Struct, frozen=True, kw_only=True):
    access_token_ttl_seconds: Annotated[int, msgspec.Meta(ge=60, le=86400)] = 3600
    min_password_length: Annotated[int, msgspec.Meta(ge=8, le=128)] = 12
    login_free_failures: NonNegative = 5
    login_max_backoff_seconds: NonNegative = 900


class HealthSettings(msgspec.Struct, frozen=True, kw_only=True):
    disk_warn_free_mb: NonNegative = 1024
    disk_fail_free_mb: NonNegative = 100


class SyncSettings(msgspec.Struct, frozen=True, kw_only=True):
    timeout_seconds: Annotated[int, msgspec.Meta(ge=10, le=7 * 86400)] = 3600  # per source; the connector is killed
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=16)] = 2  # jobs run at once per process (server or worker)


class ConnectorsSettings(msgspec.Struct, frozen=True, kw_only=True):
    custom_dir: str | None = None  # mounted Tier A connectors; None = <built-in connectors>/custom


class ReleaseSettings(msgspec.Struct, frozen=True, kw_only=True):
    # Release manifest (docs/releases.md) that tells this instance it is deprecated or outdated.
    # None/"" = never fetched; the image sets the project's URL, a source checkout leaves it off.
    manifest_url: str | None = None
    check_interval_seconds: Annotated[int, msgspec.Meta(ge=60, le=7 * 86400)] = 21600


class KeboolaSettings(msgspec.Struct, frozen=True, kw_only=True):
    # Used when a `keboola` source's configure body omits keboola_url (and, with the token, for the
    # source created at first start). The token itself is env only: Secrets.keboola_storage_token.
    stack_url: str | None = None
    # Cloud storage emulators for tests and local demos only (moto, agnes.devtools.gcs_server); never guessed.
    s3_endpoint_url: str | None = None
    gcs_endpoint_url: str | None = None


class JobsSettings(msgspec.Struct, frozen=True, kw_only=True):
    redis_url: str | None = None  # None = jobs run inside the server process
    __repr__ = _masked_repr
    __rich_repr__ = _masked_rich_repr


class Secrets(msgspec.Struct, frozen=True, kw_only=True):
    """Env only. None = security/ creates one and keeps it in state/ (it also checks the length)."""

    jwt_secret_key: str | None = None
    session_secret: str | None = None
    encryption_key: str | None = None
    setup_token: str | None = None
    keboola_storage_token: str | None = None  # a Keboola source's token when its configure body omits it
    __repr__ = _masked_repr
    __rich_repr__ = _masked_rich_repr


class _FileConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What the provisioning file may set; env variables override its scalar keys."""

    instance: InstanceSettings = msgspec.field(default_factory=InstanceSettings)
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    health: HealthSettings = msgspec.field(default_factory=HealthSettings)
    sync: SyncSettings = msgspec.field(default_factory=SyncSettings)
    connectors: ConnectorsSettings = msgspec.field(default_factory=ConnectorsSettings)
    query: QuerySettings = msgspec.field(default_factory=QuerySettings)
    release: ReleaseSettings = msgspec.field(default_factory=ReleaseSettings)
    keboola: KeboolaSettings = msgspec.field(default_factory=KeboolaSettings)
    sources: tuple[dict[str, Any], ...] = ()  # raw here; the sources service validates them


_SECTIONS: dict[str, type[msgspec.Struct]] = {
    "instance": InstanceSettings, "server": ServerSettings, "auth": AuthSettings, "health": HealthSettings,
    "sync": SyncSettings, "connectors": ConnectorsSettings, "query": QuerySettings, "release": ReleaseSettings,
    "keboola": KeboolaSettings,
}
# Every scalar key the file may set ("server.port" ...); besides these it has the `sources:` list.
FILE_KEYS: tuple[str, ...] = tuple(f"{s}.{f}" for s, cls in _SECTIONS.items() for f in cls.__struct_fields__)

# The one table of environment variables: name -> (Settings field path, description).
ENV_VARS: dict[str, tuple[str, str]] = {
    "DATA_DIR": ("data_dir", "Data directory (default ./data; /data in the container)."),
    "AGNES_CONFIG": ("config_path",
                     "Provisioning file (default $DATA_DIR/config/instance.yaml); if set, it must exist."),
    "AGNES_INSTANCE_NAME": ("instance.name", "Instance name shown in the UI and /api/health."),
    "AGNES_HOST": ("server.host", "Address the server listens on."),
    "AGNES_PORT": ("server.port", "TCP port to listen on (1..65535)."),
    "AGNES_LOG_LEVEL": ("server.log_level", "debug, info, warning or error."),
    "AGNES_TRUSTED_PROXIES": ("server.trusted_proxies", "Comma-separated proxy IPs/CIDRs (or *)."),
    "AGNES_MAX_REQUEST_BODY_MB": ("server.max_request_body_mb", "Largest request body (uploads), in MB."),
    "AGNES_ACCESS_TOKEN_TTL": ("auth.access_token_ttl_seconds", "Login token lifetime, s (60..86400)."),
    "AGNES_MIN_PASSWORD_LENGTH": ("auth.min_password_length", "Minimum password length (8..128)."),
    "AGNES_LOGIN_FREE_FAILURES": ("auth.login_free_failures", "Failed logins allowed before back-off."),
    "AGNES_LOGIN_MAX_BACKOFF": ("auth.login_max_backoff_seconds", "Longest login back-off, in seconds."),
    "AGNES_DISK_WARN_FREE_MB": ("health.disk_warn_free_mb", "Health warns below this free disk (MB)."),
    "AGNES_DISK_FAIL_FREE_MB": ("health.disk_fail_free_mb", "Health fails below this free disk (MB)."),
    "AGNES_SYNC_TIMEOUT": ("sync.timeout_seconds", "Longest run of one source's connector, s (10..604800)."),
    "AGNES_SYNC_CONCURRENCY": ("sync.concurrency", "Sync jobs run at once per server/worker (1..16)."),
    "AGNES_MAX_UPLOAD_MB": ("server.max_upload_mb", "Largest CSV upload (POST /api/admin/uploads), in MB."),
    "AGNES_CUSTOM_CONNECTORS_DIR": ("connectors.custom_dir", "Folder of mounted custom connectors."),
    "AGNES_QUERY_TIMEOUT": ("query.timeout_seconds", "Longest JSON query, s (1..3600); then 408."),
    "AGNES_QUERY_STREAM_TIMEOUT": ("query.stream_timeout_seconds", "Longest Arrow/CSV query, s (1..86400)."),
    "AGNES_QUERY_MAX_ROWS": ("query.max_rows", "Most rows in one JSON query answer."),
    "AGNES_QUERY_STREAM_MAX_ROWS": ("query.stream_max_rows", "Most rows in one Arrow/CSV query answer."),
    "AGNES_QUERY_CONCURRENCY": ("query.concurrency", "Queries run at once (1..64); a burst waits, then 503."),
    "AGNES_QUERY_MEMORY_LIMIT": ("query.memory_limit", "DuckDB memory limit of the serving catalog (2GB)."),
    "AGNES_QUERY_THREADS": ("query.threads", "DuckDB threads of the serving catalog (1..256)."),
    "AGNES_QUERY_MEMORY_CAP": ("query.memory_cap", "Server process memory cap: auto, off or a size (6GB)."),
    "AGNES_RELEASE_MANIFEST_URL": ("release.manifest_url", "Release manifest URL; empty = never fetched."),
    "AGNES_RELEASE_CHECK_INTERVAL": ("release.check_interval_seconds", "Manifest re-fetch period, s (60..604800)."),
    "AGNES_VERSION": ("build.version", "Version of this build (baked into the image); default: the package's."),
    "AGNES_CHANNEL": ("build.channel", "Release channel of this build: dev or stable (baked into the image)."),
    "AGNES_COMMIT": ("build.commit", "Git commit of this build (baked into the image)."),
    "REDIS_URL": ("jobs.redis_url", "Redis for arq workers; unset = jobs run in the server."),
    "JWT_SECRET_KEY": ("secrets.jwt_secret_key", "Signs access tokens; unset = generated into state/."),
    "SESSION_SECRET": ("secrets.session_secret", "Signs web sessions; unset = generated into state/."),
    "AGNES_ENCRYPTION_KEY": ("secrets.encryption_key", "Encrypts stored credentials; unset = state/."),
    "AGNES_SETUP_TOKEN": ("secrets.setup_token", "First-admin setup token; unset = generated."),
    "KEBOOLA_STACK_URL": ("keboola.stack_url", "Keboola stack URL when a keboola source omits keboola_url."),
    "KEBOOLA_STORAGE_TOKEN": ("secrets.keboola_storage_token", "Keboola Storage API token when the body omits it."),
    "AGNES_KEBOOLA_S3_ENDPOINT_URL": ("keboola.s3_endpoint_url", "Tests/demos only: S3 emulator for Keboola exports."),
    "AGNES_KEBOOLA_GCS_ENDPOINT_URL": ("keboola.gcs_endpoint_url", "Tests/demos only: GCS emulator for exports."),
}
SECRET_ENV_VARS = frozenset(("REDIS_URL", "JWT_SECRET_KEY", "SESSION_SECRET", "AGNES_ENCRYPTION_KEY",
                             "AGNES_SETUP_TOKEN", "KEBOOLA_STORAGE_TOKEN"))
# A key the file must not set, by its last name (or the variable's name) -> the variable to use.
_ENV_ONLY = {p.rsplit(".", 1)[-1]: e for e, (p, _) in ENV_VARS.items() if p not in FILE_KEYS}
_ENV_ONLY |= {e.lower(): e for e in _ENV_ONLY.values()}
# Built-in connectors ship beside the package (src layout: <root>/connectors, /app/connectors in the image).
BUILTIN_CONNECTORS_DIR = Path(__file__).resolve().parents[2] / "connectors"
_SECRET_LIKE = re.compile(r"secret|passw|token|api_?key|private_?key|credential", re.I)
_MISSING = object()


class _Under:
    """A path derived from data_dir, so it can never disagree with it."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    def __get__(self, obj: Any, owner: Any = None) -> Path:
        return obj.data_dir.joinpath(*self.parts)


class Settings(_FileConfig, frozen=True, kw_only=True):
    """The whole configuration, built once by `Settings.load()`."""

    data_dir: Path
    config_path: Path
    jobs: JobsSettings = msgspec.field(default_factory=JobsSettings)
    secrets: Secrets = msgspec.field(default_factory=Secrets)
    build: BuildInfo = msgspec.field(default_factory=lambda: BuildInfo(version=__version__, channel="dev",
                                                                       commit="unknown"))
    source_lines: tuple[int | None, ...] = ()  # line of each `sources` item in config_path
    warnings: tuple[str, ...] = ()  # ignored keys etc.; shown by /api/health

    state_dir = _Under("state")
    extracts_dir = _Under("extracts")
    analytics_dir = _Under("analytics")
    inbox_dir = _Under("inbox")
    uploads_dir = _Under("uploads")
    backups_dir = _Under("state", "backups")
    control_db_path = _Under("state", "agnes.sqlite")
    export_config_path = _Under("config", "instance.yaml")  # non-secret export kept in the volume

    @property
    def custom_connectors_dir(self) -> Path:
        """Where mounted (Tier A) connectors live: connectors.custom_dir, else <built-in>/custom."""
        custom = self.connectors.custom_dir
        return _absolute(custom) if custom else BUILTIN_CONNECTORS_DIR / "custom"

    def env_setting(self, name: str) -> str | None:
        """The setting behind variable `name` of ENV_VARS as text (None when unset), e.g. a source type's
        server-side fallback. KeyError for an undeclared name: every variable Agnes reads is in ENV_VARS."""
        value: Any = self
        for part in ENV_VARS[name][0].split("."):
            value = getattr(value, part)
        text = "" if value is None else str(value).strip()
        return text or None

    def source_origin(self, index: int) -> str:
        """'<file> line N' of declared source `index`, so later errors can point at it."""
        line = self.source_lines[index]
        return f"{self.config_path}" + (f" line {line}" if line else "")

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from `env` (default os.environ; empty = unset) and the provisioning file."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            return (env.get(name) or "").strip() or None

        data_dir = _absolute(get("DATA_DIR") or "./data")
        config = get("AGNES_CONFIG")
        config_path = _absolute(config) if config else data_dir / "config" / "instance.yaml"
        label = str(config_path)
        if config and not config_path.exists():  # asked for by name: a typo must not silently mean defaults
            raise StartupError(
                "config_invalid",
                f"AGNES_CONFIG={env['AGNES_CONFIG']!r} points at {config_path}, which does not exist.",
                hint=f"Create {config_path} (every key is documented in config/instance.yaml.example), fix the "
                f"path, or unset AGNES_CONFIG to use the default {data_dir / 'config' / 'instance.yaml'} "
                "(optional), then start again.",
            )
        data, lines = _read_file(config_path, label)
        kept, warnings = _known_keys(data, lines, label)
        origins: dict[str, str] = {}  # key path -> the variable that set it

        def where(path: str) -> str:
            for p, origin in origins.items():
                if path == p or path.startswith(p + "["):
                    return origin
            return f"{_at(label, lines, path)}: {path}"

        try:
            cfg = msgspec.convert(kept, _FileConfig)  # strict: an int in YAML must be an int
        except msgspec.ValidationError as e:
            msg, path = _split(str(e))
            problem = _explain(msg, _get(kept, path), path) if "`key` in" not in str(e) else (
                "every key must be a string (quote it: YAML reads on/yes/no/1 as other types)")
            raise StartupError("config_invalid", f"{where(path)}: {problem}") from None
        for name, (path, _) in ENV_VARS.items():
            if path in FILE_KEYS and (raw := get(name)) is not None:
                section, key = path.split(".")
                new = msgspec.structs.replace(getattr(cfg, section), **{key: _env_value(name, raw, path)})
                cfg = msgspec.structs.replace(cfg, **{section: new})
                origins[path] = f"{name}={env[name]!r}"
        _check(cfg, where)
        return cls(
            **{f: getattr(cfg, f) for f in _FileConfig.__struct_fields__},
            data_dir=data_dir,
            config_path=config_path,
            jobs=JobsSettings(redis_url=get("REDIS_URL")),
            secrets=Secrets(
                jwt_secret_key=get("JWT_SECRET_KEY"), session_secret=get("SESSION_SECRET"),
                encryption_key=get("AGNES_ENCRYPTION_KEY"), setup_token=get("AGNES_SETUP_TOKEN"),
                keboola_storage_token=get("KEBOOLA_STORAGE_TOKEN"),
            ),
            build=build_info(env),
            source_lines=tuple(_line(lines, f"sources[{i}]") for i in range(len(cfg.sources))),
            warnings=tuple(warnings),
        )


def build_info(env: Mapping[str, str] | None = None) -> BuildInfo:
    """Version, channel and commit the image build baked in (env only, never the file).

    Separate from `Settings.load` so `agnes version` answers even when the file is broken.
    """
    env = os.environ if env is None else env
    version, channel, commit = ((env.get(n) or "").strip() for n in ("AGNES_VERSION", "AGNES_CHANNEL", "AGNES_COMMIT"))
    if channel and channel not in CHANNELS:
        raise StartupError("config_invalid", f"AGNES_CHANNEL={env['AGNES_CHANNEL']!r}: expected one of "
                           f"{', '.join(CHANNELS)}", hint="The image build sets it (build arg AGNES_CHANNEL=dev or "
                           "stable); unset it (default dev) or set one of those values, then start again.")
    return BuildInfo(version=version or __version__, channel=channel or "dev", commit=commit or "unknown")


def _read_file(path: Path, label: str) -> tuple[dict[Any, Any], dict[str, int]]:
    """Parse the YAML keeping the line of every key path ("server.port", "sources[1]")."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, {}  # the file is optional
    except (OSError, UnicodeDecodeError) as e:
        raise StartupError("config_invalid", f"{label}: cannot read the file: {e}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None:
            return {}, {}
        if not isinstance(root, yaml.MappingNode):
            got = "a list" if isinstance(root, yaml.SequenceNode) else f"{root.value!r}"
            raise StartupError("config_invalid", f"{label} line {root.start_mark.line + 1}: the top level "
                               f"must be a mapping (instance:, server:, sources: ...), got {got}")
        lines: dict[str, int] = {}
        _index(root, "", lines, label)
        return yaml.SafeLoader("").construct_document(root), lines
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f" line {mark.line + 1}" if mark else ""
        ctx = f" ({e.context} at line {e.context_mark.line + 1})" if e.context and e.context_mark and e.problem else ""
        raise StartupError("config_invalid", f"{label}{at}: invalid YAML: {e.problem or e.context}{ctx}") from None
    except yaml.YAMLError as e:
        raise StartupError("config_invalid", f"{label}: invalid YAML: {e}") from None


def _index(node: yaml.Node, prefix: str, lines: dict[str, int], label: str, depth: int = 0) -> None:
    if depth > 50:  # aliases can make the tree recursive
        return
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "<<":  # merge key: merged keys fall back to their parent's line
                continue
            path = f"{prefix}.{key.value}" if prefix else str(key.value)
            if path in lines:  # PyYAML would silently keep the last one
                raise StartupError("config_invalid", f"{label} line {key.start_mark.line + 1}: duplicate "
                                   f"key '{path}' (first at line {lines[path]})")
            lines[path] = key.start_mark.line + 1
            _index(value, path, lines, label, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[f"{prefix}[{i}]"] = item.start_mark.line + 1
            _index(item, f"{prefix}[{i}]", lines, label, depth + 1)


def _known_keys(data: dict[Any, Any], lines: dict[str, int], label: str) -> tuple[dict[str, Any], list[str]]:
    """Keep the keys this version reads; every other key becomes a warning, not an error."""
    kept: dict[str, Any] = {}
    warnings: list[str] = []

    def ignore(path: str, value: Any) -> None:
        at, name = _at(label, lines, path), path.rsplit(".", 1)[-1]
        env = _ENV_ONLY.get(name.lower())
        if env in SECRET_ENV_VARS:
            warnings.append(f"{at}: '{path}' ignored: secrets are never read from this file; set {env} "
                            "in the environment")
        elif env:
            warnings.append(f"{at}: '{path}' ignored: it is read from the environment only; set {env}")
        elif isinstance(value, dict) and value and path.count(".") < 20:  # aliases may recurse
            for k, v in value.items():
                ignore(f"{path}.{k}", v)
        elif _SECRET_LIKE.search(name):
            warnings.append(f"{at}: '{path}' ignored: it looks like a secret and secrets are never read "
                            "from this file; put it in the environment (sources may use ${ENV_NAME})")
        else:
            warnings.append(f"{at}: unknown key '{path}' ignored")

    for key, value in data.items():
        if key == "sources" or (key in _SECTIONS and not isinstance(value, dict)):
            if value is not None:  # an empty `server:` (all commented out) means defaults
                kept[key] = value  # a wrong shape is left for msgspec to report
        elif key in _SECTIONS:
            kept[key] = {k: v for k, v in value.items() if f"{key}.{k}" in FILE_KEYS}
            for k, v in value.items():
                if f"{key}.{k}" not in FILE_KEYS:
                    ignore(f"{key}.{k}", v)
        else:
            ignore(str(key), value)
    return kept, warnings


def _env_value(name: str, raw: str, path: str) -> Any:
    """Convert one variable to its field's type (lists are comma-separated)."""
    typ = _field_type(path)
    value: Any = [p.strip() for p in raw.split(",") if p.strip()] if get_origin(typ) is tuple else raw
    try:
        return msgspec.convert(value, typ, strict=False)
    except msgspec.ValidationError as e:
        msg = _split(str(e))[0]
        problem = _explain(msg, _MISSING, path)
        problem = "expected an integer" if msg.startswith("Expected `int`, got") else problem
        raise StartupError("config_invalid", f"{name}={raw!r}: {problem}") from None


def _check(cfg: _FileConfig, where: Callable[[str], str]) -> None:
    """Rules the msgspec types cannot express."""
    for i, proxy in enumerate(cfg.server.trusted_proxies):
        try:
            if proxy != "*":
                ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise StartupError("config_invalid", f"{where(f'server.trusted_proxies[{i}]')}: {proxy!r} is "
                               "not an IP address, a network (10.0.0.0/8) or '*'") from None
    url = cfg.release.manifest_url
    if url and not _is_http_url(url):
        raise StartupError("config_invalid", f"{where('release.manifest_url')}: {url!r} is not an http(s) URL",
                           hint="Give an http:// or https:// URL of the release manifest (docs/releases.md), or "
                           "set it empty to turn the check off (AGNES_RELEASE_MANIFEST_URL overrides the file), "
                           "then start again.")
    if cfg.health.disk_fail_free_mb > cfg.health.disk_warn_free_mb:
        raise StartupError("config_invalid", f"{where('health.disk_fail_free_mb')}: must not be larger than "
                           f"health.disk_warn_free_mb ({cfg.health.disk_warn_free_mb})")
    check_query_settings(cfg.query, where)
    for i, source in enumerate(cfg.sources):
        if not isinstance(source.get("data_source"), str) or not source["data_source"]:
            raise StartupError("config_invalid", f"{where(f'sources[{i}]')}: every source needs "
                               "'data_source: <connector>' (e.g. data_source: sample)")


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url.strip())
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False


def _field_type(path: str) -> Any:
    section, _, key = path.partition(".")
    cls = _SECTIONS.get(section)
    return next((f.type for f in msgspec.structs.fields(cls) if f.name == key), None) if cls else None


def _split(msg: str) -> tuple[str, str]:
    """'Expected `int` - at `$.server.port`' -> ('Expected `int`', 'server.port')."""
    m = re.match(r"(.*?) - at `(?:key` in `)?\$\.?(.*)`$", msg, re.S)
    return (m[1], m[2]) if m else (msg, "")


def _explain(msg: str, value: Any, path: str) -> str:
    """msgspec's wording made plain, with the offending value: "expected int, got str 'eighty'"."""
    r = repr(value)
    shown = "" if value is _MISSING or value is None else " " + (r if len(r) < 80 else r[:77] + "...")
    if msg.startswith("Invalid enum value") and (choices := get_args(_field_type(path))):
        return f"expected one of {', '.join(choices)}" + (f", got{shown}" if shown else "")
    m = re.match(r"Expected `([^`]*)`(?:, got `([^`]*)`)?(.*)$", msg, re.S)
    if not m:
        return msg.replace("`", "")
    got = f", got {m[2]}{shown}" if m[2] else (f", got{shown}" if shown else "")
    return f"expected {m[1]}{m[3]}{got}"


def _line(lines: dict[str, int], path: str) -> int | None:
    """The line of `path`, else of its nearest parent present in the file."""
    while path:
        if path in lines:
            return lines[path]
        parent = re.sub(r"(\.[^.\[]*|\[\d+\]|^[^.\[]*)$", "", path)
        path = "" if parent == path else parent
    return None


def _absolute(path: str) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))  # normalised, symlinks kept


def _at(label: str, lines: dict[str, int], path: str) -> str:
    line = _line(lines, path)
    return f"{label} line {line}" if line else label


def _get(data: Any, path: str) -> Any:
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        try:
            data = data[int(token[1:-1])] if token.startswith("[") else data[token]
        except (KeyError, IndexError, TypeError, ValueError):
            return _MISSING
    return data
