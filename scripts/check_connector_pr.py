#!/usr/bin/env python3
"""Tier C rule 3 (docs/connectors.md): a pull request that adds or changes a connector changes no shared code.

    python3 scripts/check_connector_pr.py --base origin/main [--head HEAD]

A change under connectors/<name>/ may come only with: its tests (tests/connectors/<name>/,
tests/integration/test_<name>_connector.py), a CHANGELOG.md line, and ONE new `register(...)`
statement in src/agnes/services/source_types.py (only added lines, all inside that statement).
Anything else — the orchestrator, the API, the engine, contract_tests/, another connector — is a
separate pull request. A new connector must come with tests (rule 2).
Exit 0: fine (or no connector changed); 1: shared code touched; 2: usage/git error.
Standard library only, so CI runs it before anything is installed.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import PurePosixPath

REGISTRY = "src/agnes/services/source_types.py"


def git(*args: str, cwd: str | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {done.stderr.strip()}\n"
                         "hint: fetch the base branch first (actions/checkout with fetch-depth: 0), "
                         "and pass it as --base origin/<branch>")
    return done.stdout


def changed_paths(base: str, head: str, cwd: str | None) -> list[str]:
    """Every path the PR adds, changes, deletes or renames (both names of a rename)."""
    out = git("diff", "--name-status", "-z", "--no-renames", f"{base}...{head}", cwd=cwd)
    fields = [f for f in out.split("\0") if f]
    return sorted({path for status, path in zip(fields[::2], fields[1::2], strict=True) if status})


def connectors_in(paths: list[str]) -> set[str]:
    return {p.split("/")[1] for p in paths if p.startswith("connectors/") and p.count("/") >= 2}


def allowed(path: str, names: set[str]) -> bool:
    parts = PurePosixPath(path).parts
    if path == "CHANGELOG.md" or path == REGISTRY:  # the registry is checked line by line below
        return True
    if len(parts) > 2 and parts[0] == "connectors" and parts[1] in names:
        return True
    if len(parts) > 3 and parts[:2] == ("tests", "connectors") and parts[2] in names:
        return True
    m = re.fullmatch(r"tests/integration/test_([a-z][a-z0-9_]*)_connector\.py", path)
    return bool(m and m.group(1) in names)


def _register_statements(text: str) -> list[tuple[int, int]]:
    """(first line, last line) of each top-level `register(...)` statement."""
    return [(n.lineno, n.end_lineno or n.lineno) for n in ast.parse(text).body
            if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)
            and isinstance(n.value.func, ast.Name) and n.value.func.id == "register"]


def registry_problem(base: str, head: str, cwd: str | None) -> str | None:
    """None when source_types.py gained exactly one register(...) statement and nothing else."""
    diff = git("diff", "-U0", f"{base}...{head}", "--", REGISTRY, cwd=cwd)
    if not diff:
        return None
    removed = [line for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    if removed:
        return f"{REGISTRY}: lines removed or changed ({removed[0][1:].strip()!r}); only add one register(...)"
    added: set[int] = set()
    for m in re.finditer(r"^@@ -\S+ \+(\d+)(?:,(\d+))? @@", diff, re.M):
        start, count = int(m.group(1)), int(m.group(2) or "1")
        added |= set(range(start, start + count))
    merge_base = git("merge-base", base, head, cwd=cwd).strip()
    before = _register_statements(git("show", f"{merge_base}:{REGISTRY}", cwd=cwd))
    after = _register_statements(git("show", f"{head}:{REGISTRY}", cwd=cwd))
    if len(after) != len(before) + 1:
        return f"{REGISTRY}: expected exactly one new register(...) statement, found {len(after) - len(before)}"
    new = [(a, b) for a, b in after if set(range(a, b + 1)) <= added]
    outside = sorted(added - {line for a, b in new for line in range(a, b + 1)})
    blank = {i + 1 for i, line in enumerate(git("show", f"{head}:{REGISTRY}", cwd=cwd).splitlines())
             if not line.strip()}
    outside = [line for line in outside if line not in blank]
    if len(new) != 1 or outside:
        return (f"{REGISTRY}: added lines {outside or sorted(added)} are not one register(...) statement; "
                "the source type's class and helpers belong in connectors/<name>/ or a separate PR")
    return None


def check(base: str, head: str = "HEAD", cwd: str | None = None) -> list[str]:
    """The problems of the PR base...head (empty: fine)."""
    paths = changed_paths(base, head, cwd)
    names = connectors_in(paths)
    if not names:
        return []
    problems = [f"{p}: shared code (a connector PR may change only connectors/{'|'.join(sorted(names))}/, "
                "its tests, CHANGELOG.md and one register(...) in " + REGISTRY + ")"
                for p in paths if not allowed(p, names)]
    existing = set(git("ls-tree", "-r", "--name-only", git("merge-base", base, head, cwd=cwd).strip(),
                       "--", "connectors", cwd=cwd).split())
    for name in sorted(names):  # rule 2: a new connector comes with its own tests
        tests = [p for p in paths if p.startswith(f"tests/connectors/{name}/")
                 or p == f"tests/integration/test_{name}_connector.py"]
        if f"connectors/{name}/extractor.py" not in existing and not tests:
            problems.append(f"connectors/{name}/ is new but the PR adds no tests for it: add "
                            f"tests/connectors/{name}/ or tests/integration/test_{name}_connector.py (rule 2)")
    if REGISTRY in paths and (problem := registry_problem(base, head, cwd)):
        problems.append(problem)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the branch the PR goes into, e.g. origin/main")
    parser.add_argument("--head", default="HEAD")
    args = parser.parse_args(argv)
    try:
        problems = check(args.base, args.head)
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        print("hint: split the change: the connector (connectors/<name>/, its tests, CHANGELOG.md, one "
              "register(...)) in one pull request, the shared-code change in another, after an issue "
              "(docs/connectors.md, Tier C rule 3)", file=sys.stderr)
        return 1
    print("ok: no connector change touches shared code")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
