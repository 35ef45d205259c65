"""The docs an AI agent relies on say only true things: CLAUDE.md quotes the frozen contract SQL
exactly, and CLAUDE.md / QUICKSTART.md / the connector guides link to files, commands, env vars
and folders that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.main import get_command

from agnes.cli import app as cli_app
from agnes.settings import ENV_VARS

ROOT = Path(__file__).resolve().parents[2]
CLAUDE = ROOT / "CLAUDE.md"
SPEC = ROOT / "contract_tests" / "spec"
AGENT_DOCS = [CLAUDE, ROOT / "QUICKSTART.md", ROOT / "docs" / "connectors.md", ROOT / "docs" / "errors.md",
              ROOT / "examples" / "custom-connectors" / "README.md",
              ROOT / "examples" / "custom-connectors" / "sqlite_file" / "README.md",
              ROOT / "examples" / "standalone-connector" / "README.md"]
FENCE = re.compile(r"^[ \t]*```(\w*)[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.M | re.S)


def _blocks(path: Path, lang: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(path.read_text(encoding="utf-8")) if m.group(1) == lang]


def test_claude_md_quotes_the_contract_sql_exactly():
    spec = {p.name: p.read_text(encoding="utf-8").strip() for p in sorted(SPEC.glob("*.sql"))}
    assert set(spec) == {"meta.sql", "remote_attach.sql"}
    ddl = [b.strip() for b in _blocks(CLAUDE, "sql") if b.lstrip().upper().startswith("CREATE TABLE")]
    assert sorted(ddl) == sorted(spec.values()), (
        "the ```sql blocks in CLAUDE.md must equal contract_tests/spec/*.sql byte for byte (bar outer whitespace)")


def test_claude_md_covers_what_an_agent_needs():
    text = CLAUDE.read_text(encoding="utf-8")
    for heading in ("Set up an instance (headless)", "Read the health report", "Errors", "Layout", "Names",
                    "The extract contract", "Recipe: a Tier A (custom) connector"):
        assert re.search(rf"^## {re.escape(heading)}", text, re.M), f"CLAUDE.md lacks the section {heading!r}"
    recipe = text.split("## Recipe: a Tier A (custom) connector", 1)[1].split("\n## ", 1)[0]
    assert _blocks_in(recipe, "bash")[-1].strip() == ".venv/bin/agnes contract check /tmp/out", \
        "the connector recipe ends with `agnes contract check`"
    assert "QUICKSTART.md" in text and "docs/errors.md" in text
    assert "click" not in text.lower() and "screenshot" not in text.lower()


def _blocks_in(text: str, lang: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(text) if m.group(1) == lang]


@pytest.mark.parametrize("doc", AGENT_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files(doc: Path):
    text = doc.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        assert (doc.parent / target).exists(), f"{doc.relative_to(ROOT)} links to a missing {target}"


@pytest.mark.parametrize("doc", AGENT_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_env_vars_and_paths_exist(doc: Path):
    text = doc.read_text(encoding="utf-8")
    root = get_command(cli_app)
    for first, second in re.findall(r"`(?:\.venv/bin/)?agnes ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", text):
        cmd = root.commands.get(first)  # type: ignore[attr-defined]
        assert cmd is not None, f"{doc.name}: `agnes {first}` is not a command"
        if second and hasattr(cmd, "commands"):
            assert second in cmd.commands, f"{doc.name}: `agnes {first} {second}` is not a command"
    for var in set(re.findall(r"\b(AGNES_[A-Z0-9_]+)\b", text)):
        runtime = {"AGNES_OUTPUT_DIR", "AGNES_CONFIG_JSON", "AGNES_TABLES", "AGNES_SOURCE_NAME", "AGNES_STATE_DIR",
                   "AGNES_PREVIOUS_RUN_DIR"}  # set by Agnes for a connector (docs/connector-runtime.md)
        examples = {"AGNES_URL", "AGNES_TOKEN", "AGNES_INBOX"}  # shell variables of QUICKSTART / the Tier B example
        assert var in ENV_VARS or var in runtime or var in examples, f"{doc.name}: {var} is not an Agnes variable"
    for path in re.findall(r"`((?:src/agnes|connectors|contract_tests|examples|deploy|docs|tests)/[\w./-]*)`", text):
        if "<" in path or "*" in path:
            continue
        assert (ROOT / path).exists(), f"{doc.name} names {path}, which does not exist"


def test_layout_in_claude_md_exists():
    [layout] = [b for b in _blocks(CLAUDE, "") if b.startswith("QUICKSTART.md")]
    for line in layout.splitlines():
        for name in re.findall(r"^\s*([\w./<>-]+/)", line) + re.findall(r"^([A-Za-z_.-]+\.(?:md|toml|yml))\b", line):
            if "<" not in name:
                folder = name if name.startswith(("src/", "connectors", "contract", "examples", "deploy", "docs",
                                                  "tests")) or "." in name else f"src/agnes/{name}"
                assert (ROOT / folder).exists(), f"CLAUDE.md layout lists {folder}, which does not exist"
        for file in re.findall(r"^  ([a-z_]+\.py)\b", line):  # entries of src/agnes/ (deeper lines are prose)
            assert (ROOT / "src" / "agnes" / file).is_file(), f"CLAUDE.md layout lists {file}"


def test_duckdb_pins_written_in_the_docs_match_pyproject():
    """A connector must write with the DuckDB version Agnes reads; the docs name it by hand."""
    pinned = re.search(r'"duckdb==([\w.]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8")).group(1)
    files = [CLAUDE, ROOT / "docs" / "connectors.md", ROOT / "examples" / "standalone-connector" / "README.md",
             ROOT / "examples" / "standalone-connector" / "Dockerfile"]
    found = {str(p.relative_to(ROOT)): re.findall(r"duckdb==([\w.]+)", p.read_text(encoding="utf-8")) for p in files}
    assert all(found.values()), f"expected a duckdb==VERSION pin in each of {found}"
    wrong = {name: pins for name, pins in found.items() if set(pins) != {pinned}}
    assert not wrong, f"pyproject.toml pins duckdb=={pinned}; these say otherwise: {wrong}"
