"""QUICKSTART.md is executed, not just read: a new AI agent follows it literally.

Every ```bash run``` (and ```bash run no-docker```) block runs with bash, in order, in one shell
session (exported variables and functions carry over), against a fresh `agnes serve` started with
`make run`'s settings (data in ./data of the working directory, 127.0.0.1). ```bash run error```
blocks must fail and print errors whose hint an agent can act on. The Keboola demo server block
(```bash server no-docker```) runs as written and its printed `export` lines are pasted into the
session. ```bash server``` (make run), ```bash docker``` and ```bash edit``` blocks are checked
statically.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow.compute as pc
import pytest
from typer.main import get_command

from agnes.cli import app as cli_app
from agnes.extract.sample_data import generate
from tests.helpers import LiveServer
from tests.unit.test_errors_catalogue import actionable

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "QUICKSTART.md"
FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
KNOWN_TAGS = {("run",), ("run", "no-docker"), ("run", "error"), ("server",), ("server", "no-docker"), ("docker",),
              ("edit",)}
RUN = {("run",), ("run", "no-docker"), ("run", "error")}


@dataclass(frozen=True)
class Block:
    lang: str
    tags: tuple[str, ...]
    body: str
    line: int
    section: str  # the `## ` heading above the block

    def __str__(self) -> str:
        return f"QUICKSTART.md line {self.line} ({' '.join((self.lang, *self.tags))})"


def doc_blocks(text: str) -> list[Block]:
    blocks = []
    for m in FENCE.finditer(text):
        headings = re.findall(r"^## (.+)$", text[:m.start()], re.M)
        blocks.append(Block(m.group(1), tuple(m.group(2).split()), m.group(3), text.count("\n", 0, m.start()) + 1,
                            headings[-1] if headings else ""))
    return blocks


BLOCKS = doc_blocks(QUICKSTART.read_text(encoding="utf-8"))
BASH = [b for b in BLOCKS if b.lang == "bash"]


# --- static checks ------------------------------------------------------------------------

def test_every_bash_block_says_how_it_is_checked():
    untagged = [str(b) for b in BASH if b.tags not in KNOWN_TAGS]
    assert not untagged, f"tag each bash block with one of {sorted(KNOWN_TAGS)}: {untagged}"
    assert sum(b.tags == ("run",) for b in BASH) >= 10 and any(b.tags == ("run", "error") for b in BASH)
    assert not [b for b in BLOCKS if b.lang == "sh"], "use ```bash with a tag, so this test sees the block"


def test_steps_that_need_the_venv_say_so_or_show_the_docker_way():
    """A block using .venv/ (a `make run` checkout) is tagged no-docker, or its section shows a ```bash docker```
    block: someone who started with Docker has no .venv."""
    for block in BASH:
        if ".venv/" not in block.body or "no-docker" in block.tags:
            continue
        assert any(b.tags == ("docker",) for b in BASH if b.section == block.section), (
            f"{block} uses .venv/: tag it `no-docker` or add a ```bash docker``` block to '{block.section}'")
    assert all(".venv/" not in b.body for b in BASH if b.tags == ("run",)), "a plain `run` block must work with Docker"


def test_every_api_call_in_a_run_block_shows_its_error():
    """Calls go through agnes_api (error on stderr, non-zero) or `curl --fail-with-body`; a bare curl is the
    health report only (its body is the answer even on 503) and the wait for the server to start."""
    for block in BASH:
        if block.tags[0] != "run" or "agnes_api() {" in block.body:
            continue
        for line in block.body.splitlines():
            if re.search(r"\bcurl\b", line):
                assert "--fail-with-body" in line or "/api/health" in line, f"{block}: {line.strip()}"


def test_server_block_is_make_run_and_its_defaults_match_agnes_url():
    [server] = [b for b in BASH if b.tags == ("server",)]
    assert server.body.strip() == "make run"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^run:.*\n\tDATA_DIR=\$\(DATA_DIR\) \$\(BIN\)/agnes serve --host \$\(HOST\) --port \$\(PORT\)",
                     makefile, re.M), "the run target changed: update QUICKSTART.md and this test"
    defaults = dict(re.findall(r"^(DATA_DIR|HOST|PORT) \?= (\S+)$", makefile, re.M))
    assert defaults == {"DATA_DIR": "./data", "HOST": "127.0.0.1", "PORT": "8000"}
    assert 'AGNES_URL="${AGNES_URL:-http://127.0.0.1:8000}"' in BASH[[b.tags for b in BASH].index(("run",))].body


def _agnes_commands(text: str) -> list[list[str]]:
    return [m.group(1).split() for m in re.finditer(r"\bagnes ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)", text)]


def test_every_agnes_command_in_the_doc_exists():
    root = get_command(cli_app)
    text = QUICKSTART.read_text(encoding="utf-8")
    for words in _agnes_commands(text):
        cmd = root.commands.get(words[0])  # type: ignore[attr-defined]
        if cmd is None:
            continue  # prose such as "agnes checkout"; commands are followed by a known name or fail below
        if len(words) > 1 and hasattr(cmd, "commands"):
            assert words[1] in cmd.commands, f"`agnes {' '.join(words)}` is not a CLI command"
    used = {w[0] for w in _agnes_commands("\n".join(b.body for b in BASH))}
    assert used and used <= set(root.commands), f"unknown commands in blocks: {used - set(root.commands)}"  # type: ignore[attr-defined]


def test_docker_blocks_reference_real_services_and_variables():
    text = QUICKSTART.read_text(encoding="utf-8")
    docker = [b for b in BASH if b.tags == ("docker",)]
    assert docker, "the Docker path must be shown"
    defined = {"AGNES_URL", "PATH", "HOME"}
    for block in BASH:  # a variable a block uses must be exported by an earlier block (or itself)
        defined |= set(re.findall(r"(?:export )?\b([A-Z][A-Z0-9_]*)=", block.body))
        required = re.sub(r"\$\{[A-Z][A-Z0-9_]*:?[-+][^}]*\}", "", block.body)  # ${X:-default}, ${X:+when set}
        used = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", required))
        assert used <= defined, f"{block} uses {sorted(used - defined)} before any block sets it"
    services = set(re.findall(r"docker compose (?:exec|logs|restart)(?: -T)? ([a-z][a-z0-9_-]*)", text))
    services |= set(re.findall(r"docker compose cp \S+ ([a-z][a-z0-9_-]*):", text))
    assert services, "expected `docker compose exec/logs SERVICE` in the Docker path"
    # `docker compose up -d` in the checkout reads docker-compose.yml: it must be a valid stack
    compose = Path(sys.executable).parent / "docker-compose"
    assert compose.exists(), f"docker-compose is not installed: {sys.executable} -m pip install -e '.[lint]'"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGNES_", "COMPOSE_", "DOMAIN", "REDIS_"))}
    checked = subprocess.run([str(compose), "-f", "docker-compose.yml", "config", "-q"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    declared = set(json.loads(subprocess.run([str(compose), "-f", "docker-compose.yml", "config", "--format", "json"],
                                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                                             check=True).stdout)["services"])
    assert services <= declared, f"QUICKSTART.md names compose services {sorted(services - declared)} " \
                                 "that docker-compose.yml does not declare"


# --- the walk-through ----------------------------------------------------------------------

def _bash_env(url: str) -> dict[str, str]:
    """The caller's environment minus anything that would point the blocks elsewhere (a real Keboola
    token, another Agnes): the blocks see only what earlier blocks set."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AGNES_", "JWT_", "SESSION_", "DATA_DIR", "KEBOOLA_", "REDIS_URL", "SETUP_TOKEN",
                                "JOB_ID", "STATUS", "ADMIN_", "LOGIN_TOKEN"))}
    env["AGNES_URL"] = url
    return env


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str

    def errors(self) -> list[dict]:
        """The errors agnes_api printed on stderr (one JSON object a line)."""
        return [json.loads(line) for line in self.stderr.splitlines() if line.startswith("{")]


class Shell:
    """One shell session across blocks, as a person pasting them into one terminal: exported variables
    and functions are saved after each block and restored before the next."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd, self.env = cwd, env
        self.state = cwd / ".quickstart-env"
        self.state.write_text("")
        self.options = ""  # `set -o …` a block typed: it stays set in the terminal

    def paste(self, lines: str) -> None:
        self.state.write_text(self.state.read_text() + lines)

    def run(self, block: Block, *, strict: bool = True, timeout: float = 180, **env: str) -> Ran:
        """`strict`: `set -euo pipefail`, as the test's own guard; without it, as typed into a terminal."""
        script = (f'source "{self.state}"\n{self.options}{"set -euo pipefail" if strict else ""}\n{block.body}\n'
                  f'rc=$?; {{ export -p; declare -f; }} > "{self.state}"; exit $rc\n')
        done = subprocess.run(["bash", "-c", script], cwd=self.cwd, env={**self.env, **env}, capture_output=True,
                              text=True, timeout=timeout)
        self.options += "".join(f"{m}\n" for m in re.findall(r"^set -o \w+", block.body, re.M))  # stays set
        return Ran(done.returncode, done.stdout, done.stderr)


def _expected_status_counts() -> list[list[object]]:
    orders = generate()["orders"]
    counts = pc.value_counts(orders["status"]).to_pylist()
    return sorted([c["values"], c["counts"]] for c in counts)


def _assert_actionable(body: dict, code: str) -> dict:
    err = body.get("error") or {}
    assert err.get("code") == code, body
    assert err.get("message") and actionable(code, err.get("hint", "")), f"no actionable hint: {body}"
    return err


NULLABLE = {"error"}  # a finished job's `error` is null when it succeeded


def _assert_no_missing_fields(block: Block, stdout: str) -> None:
    """A projection like `jq '{name, type}'` prints null for a renamed field; nothing printed may be null
    (bar NULLABLE keys), so a renamed field fails here instead of printing `null`."""
    def walk(value: object, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                assert v is not None or k in NULLABLE, f"{block}: {path}.{k} is null — renamed field?\n{stdout}"
                walk(v, f"{path}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                if isinstance(v, dict | list):
                    walk(v, f"{path}[{i}]")
    decoder, at = json.JSONDecoder(), 0
    while at < len(stdout):  # JSON values (compact or pretty-printed) between lines of plain text
        if stdout[at] in "{[":
            value, at = decoder.raw_decode(stdout, at)
            walk(value, "")
        else:
            line_end = stdout.find("\n", at)
            line_end = len(stdout) if line_end < 0 else line_end
            assert stdout[at:line_end].strip() != "null", f"{block} printed null:\n{stdout}"
            at = line_end
        while at < len(stdout) and stdout[at] in " \n":
            at += 1


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The checkout as `make run` sees it: ./data and ./.venv (bin/agnes) beside the commands."""
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    return tmp_path


class DocServer:
    """A ```bash server no-docker``` block run as written (port 8765 -> a free one), in the workdir."""

    def __init__(self, block: Block, cwd: Path, env: dict[str, str]) -> None:
        assert "--port 8765" in block.body, block
        self.proc = subprocess.Popen(["bash", "-c", block.body.replace("--port 8765", "--port 0")], cwd=cwd,
                                     env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def exports(self, timeout: float = 30) -> str:
        """The `export NAME=value` lines it prints for the user to paste."""
        lines: queue.Queue[str] = queue.Queue()
        # A reader thread, not select(): a buffered text pipe may hold several lines after one wake-up.
        threading.Thread(target=lambda: [lines.put(line) for line in self.proc.stdout], daemon=True).start()  # type: ignore[union-attr]
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while sum(line.startswith("export ") for line in seen) < 2:
            assert time.monotonic() < deadline and self.proc.poll() is None, f"no export lines: {seen}"
            try:
                seen.append(lines.get(timeout=0.5))
            except queue.Empty:
                pass
        return "".join(line for line in seen if line.startswith("export "))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)


@pytest.mark.slow
def test_a_new_agent_follows_quickstart_to_a_correct_query(workdir: Path, data_dir: Path):
    assert data_dir == workdir / "data"  # make run's DATA_DIR=./data, seen from the checkout
    server = LiveServer(data_dir)
    demo: DocServer | None = None
    try:
        server.wait_ready()
        shell = Shell(workdir, _bash_env(server.url))
        outputs: dict[int, Ran] = {}
        for block in BASH:
            if block.tags == ("server", "no-docker"):  # the Keboola demo server, in a "second terminal"
                demo = DocServer(block, workdir, shell.env)
                exports = demo.exports()
                assert "KEBOOLA_STACK_URL=" in exports and "KEBOOLA_STORAGE_TOKEN=" in exports, exports
                shell.paste(exports)
                continue
            if block.tags not in RUN:
                continue
            if "/auth/bootstrap" in block.body:
                _meet_setup_errors(server.url)
            if "error" in block.tags:
                ran = outputs[block.line] = shell.run(block, strict=False)
                _check_error_block(block, ran)
            else:
                ran = outputs[block.line] = shell.run(block)
                assert ran.returncode == 0, f"{block} failed ({ran.returncode}):\n{block.body}\n" \
                                            f"--- stdout\n{ran.stdout}\n--- stderr\n{ran.stderr}"
                _assert_no_missing_fields(block, ran.stdout)
        _check_results(outputs)
        _a_failing_call_shows_its_error(shell)
        _meet_more_errors(server.url, workdir)
    finally:
        server.stop()
        if demo is not None:
            demo.stop()


def _output_of(outputs: dict[int, Ran], needle: str) -> Ran:
    [line] = [b.line for b in BASH if needle in b.body and b.line in outputs]
    return outputs[line]


def _check_results(outputs: dict[int, Ran]) -> None:
    answer = json.loads(_output_of(outputs, "GROUP BY status").stdout)
    assert answer["columns"] == ["status", "orders"]
    assert answer["rows"] == _expected_status_counts()
    assert sum(n for _, n in answer["rows"]) == 10_000
    assert _output_of(outputs, "duckdb.sql").stdout.strip() == "10000 rows"
    assert json.loads(_output_of(outputs, "FROM sales.regions").stdout) == [["North", 120000], ["South", 95000],
                                                                            ["East", 87000]]
    [missing] = _output_of(outputs, "'{data_source: \"keboola\", keboola_url: $url}'").errors()
    assert missing["code"] == "missing_credentials" and "KEBOOLA_STORAGE_TOKEN" in missing["message"], missing
    [refused] = _output_of(outputs, "not-a-storage-token").errors()
    assert refused["code"] == "invalid_credentials" and "KEBOOLA_STORAGE_TOKEN" in refused["hint"], refused
    assert json.loads(_output_of(outputs, 'select(.source == "keboola")').stdout) == [
        "keboola.in_c_crm_customers", "keboola.in_c_crm_orders"]
    typed = json.loads(_output_of(outputs, "FROM keboola.in_c_crm_orders").stdout)
    assert typed["types"] == ["BIGINT", "DECIMAL(12,2)", "BOOLEAN", "DATE"], typed
    assert [r[0] for r in typed["rows"]] == [1, 2, 3] and typed["rows"][0][2] is True, typed
    health = json.loads(_output_of(outputs, '{status, setup_required, checks, warnings, errors}').stdout)
    assert health["setup_required"] is False and health["checks"]["catalog"]["status"] == "ok"


def _check_error_block(block: Block, ran: Ran) -> None:
    assert ran.returncode != 0, f"{block} was meant to fail but exited 0:\n{ran.stdout}{ran.stderr}"
    errors = ran.errors()
    assert errors and len(errors) == block.body.count("agnes_api "), f"{block} printed no error:\n{ran.stderr}"
    for err in errors:
        assert err.get("code") and actionable(err["code"], err.get("hint", "")), f"{block}: no actionable hint: {err}"
        assert isinstance(err.get("status"), int) and err["status"] >= 400, err
    comment = block.body + "".join(QUICKSTART.read_text().splitlines(True)[block.line - 3:block.line])
    for err in errors:  # the prose right above the block names the code the agent will see
        assert err["code"] in comment, f"{block}: the doc does not announce {err['code']}"


def _a_failing_call_shows_its_error(shell: Shell) -> None:
    """The promise of the doc's introduction: a call that fails shows the error and stops the block — also
    typed into a plain terminal (no `set -e`, no pipefail), where an empty value would otherwise carry on."""
    session = shell.state.read_text()
    for needle in ("GROUP BY status", '{"source": "sample"}'):  # a query, and `JOB_ID="$(… | jq -er .job_id)"`
        [block] = [b for b in BASH if needle in b.body and b.tags == ("run",)]
        for strict in (False, True):
            shell.paste("export AGNES_TOKEN=agnes_not-a-real-token\n")
            ran = shell.run(block, strict=strict)
            shell.state.write_text(session)
            assert ran.returncode != 0, f"{block} with a wrong token exited 0 (strict={strict}):\n{ran.stdout}"
            [err] = ran.errors()
            assert err["status"] == 401 and err["code"] == "invalid_token", ran.stderr
            assert "POST /auth/token" in err["hint"], err
            assert "null" not in ran.stdout, f"{block} went on with a null value:\n{ran.stdout}"


def _meet_setup_errors(url: str) -> None:
    """Before bootstrapping: the agent skips the token, or sends a wrong one."""
    blocked = httpx.get(url + "/api/catalog/tables")
    assert blocked.status_code == 503
    assert "agnes setup-token" in _assert_actionable(blocked.json(), "setup_required")["hint"]
    wrong = httpx.post(url + "/auth/bootstrap", json={"email": "admin@example.com",
                                                      "password": "choose-a-long-passphrase", "setup_token": "nope"})
    assert wrong.status_code == 403
    assert "agnes setup-token" in _assert_actionable(wrong.json(), "invalid_setup_token")["hint"]


def _meet_more_errors(url: str, workdir: Path) -> None:
    """After the walk-through: the mistakes an agent makes next, each answered by an actionable hint."""
    env = dict(re.findall(r'^declare -x (AGNES_TOKEN|ADMIN_EMAIL)="([^"]*)"$',
                          (workdir / ".quickstart-env").read_text(), re.M))
    h = {"Authorization": f"Bearer {env['AGNES_TOKEN']}"}
    again = httpx.post(url + "/auth/bootstrap", json={"email": env["ADMIN_EMAIL"], "password": "x" * 20,
                                                      "setup_token": "anything"})
    assert again.status_code == 409 and "POST /auth/token" in _assert_actionable(again.json(),
                                                                                 "already_bootstrapped")["hint"]
    missing = httpx.post(url + "/api/users", headers=h, json={"email": "analyst@example.com", "role": "analyst"})
    assert missing.status_code == 400 and "password" in _assert_actionable(missing.json(),
                                                                         "validation_failed")["message"]
    unknown = httpx.post(url + "/api/admin/configure", headers=h, json={"data_source": "sample", "colour": "red"})
    assert "colour" in _assert_actionable(unknown.json(), "unknown_option")["message"]
    no_type = httpx.post(url + "/api/admin/configure", headers=h, json={"data_source": "oracle"})
    assert "sample" in _assert_actionable(no_type.json(), "unsupported_data_source")["hint"]
    no_source = httpx.post(url + "/api/sync/trigger", headers=h, json={"source": "crm"})
    assert no_source.status_code == 404
    _assert_actionable(no_source.json(), "source_not_found")
    bad_csv = httpx.post(url + "/api/admin/uploads?source=sales", headers=h,
                         files={"file": ("bad.csv", b"a,b\n1,2,3\n", "text/csv")})
    assert "line 2" in _assert_actionable(bad_csv.json(), "invalid_csv")["message"]
    two = httpx.post(url + "/api/query", headers=h, json={"sql": "SELECT 1; SELECT 2"})
    _assert_actionable(two.json(), "multiple_statements")
    write = httpx.post(url + "/api/query", headers=h, json={"sql": "DELETE FROM sample.orders"})
    _assert_actionable(write.json(), "query_not_allowed")
    files = httpx.post(url + "/api/query", headers=h, json={"sql": "SELECT * FROM read_csv('/etc/passwd')"})
    assert files.status_code == 403 and files.json()["error"]["code"] in ("function_not_allowed", "query_not_allowed")
    _assert_actionable(files.json(), files.json()["error"]["code"])
    absent = httpx.get(url + "/api/data/sample.nope/download", headers=h)
    assert absent.status_code == 404
    _assert_actionable(absent.json(), "table_not_found")
