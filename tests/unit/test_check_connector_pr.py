"""scripts/check_connector_pr.py (Tier C rule 3, run by .github/workflows/pr-check.yml) on real git history:
a connector PR passes with its own folder, tests, a CHANGELOG line and one register(...); touching shared
code fails and names the file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_connector_pr.py"
REGISTRY = "src/agnes/services/source_types.py"
BASE_REGISTRY = '''"""The registry."""


class SampleType:
    pass


register(SampleType("sample", "Demo data."))
'''


def git(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com", GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout


def write(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A main branch with a connector, the registry and shared code; the PR branch `pr` starts from it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write(repo, {"connectors/sample/extractor.py": "print('sample')\n", REGISTRY: BASE_REGISTRY,
                 "src/agnes/engine/query.py": "X = 1\n", "CHANGELOG.md": "# Changelog\n\n## [Unreleased]\n",
                 "tests/connectors/sample/test_sample.py": "def test(): pass\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "pr")
    return repo


def check(repo: Path, changes: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Commit `changes` (and whatever the test wrote) on the PR branch and run the check against main."""
    write(repo, changes or {})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pr")
    return subprocess.run([sys.executable, str(SCRIPT), "--base", "main"], cwd=repo, capture_output=True, text=True,
                          timeout=60)


def a_connector(repo: Path, registry_tail: str = 'register(AcmeType(\n    "acme",\n    "Acme CRM.",\n))\n') -> None:
    write(repo, {"connectors/acme/extractor.py": "print('acme')\n", "connectors/acme/matrix.json": "{}\n",
                 "tests/connectors/acme/test_acme.py": "def test(): pass\n",
                 "tests/integration/test_acme_connector.py": "def test(): pass\n",
                 "CHANGELOG.md": "# Changelog\n\n## [Unreleased]\n- Acme connector.\n",
                 REGISTRY: BASE_REGISTRY + registry_tail})


def test_a_connector_with_its_tests_changelog_and_one_register_passes(repo: Path):
    a_connector(repo)
    done = check(repo)
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout


def test_touching_shared_code_fails_and_names_the_file(repo: Path):
    a_connector(repo)
    done = check(repo, {"src/agnes/engine/query.py": "X = 2\n"})
    assert done.returncode == 1
    assert "src/agnes/engine/query.py: shared code" in done.stderr and "hint: split the change" in done.stderr


def test_touching_another_connector_or_its_tests_fails(repo: Path):
    a_connector(repo)
    write(repo, {"tests/connectors/sample/test_sample.py": "def test(): assert True\n"})
    done = check(repo)
    assert done.returncode == 1 and "tests/connectors/sample/test_sample.py" in done.stderr


def test_the_registry_may_only_gain_one_register_statement(repo: Path):
    a_connector(repo, registry_tail='\n\nclass AcmeType(SampleType):\n    pass\n\n\nregister(AcmeType("acme", "x"))\n')
    done = check(repo)
    assert done.returncode == 1 and "not one register(...) statement" in done.stderr, done.stderr


def test_changing_an_existing_registry_line_fails(repo: Path):
    a_connector(repo)
    write(repo, {REGISTRY: (repo / REGISTRY).read_text().replace("Demo data.", "Demo.")})
    done = check(repo)
    assert done.returncode == 1 and "lines removed or changed" in done.stderr, done.stderr


def test_a_new_connector_without_tests_fails(repo: Path):
    done = check(repo, {"connectors/acme/extractor.py": "print('acme')\n"})
    assert done.returncode == 1 and "adds no tests" in done.stderr, done.stderr


def test_a_fix_to_an_existing_connector_needs_no_new_test(repo: Path):
    done = check(repo, {"connectors/sample/extractor.py": "print('sample, fixed')\n"})
    assert done.returncode == 0, done.stderr


def test_a_pr_without_a_connector_is_not_this_checks_business(repo: Path):
    done = check(repo, {"src/agnes/engine/query.py": "X = 3\n"})
    assert done.returncode == 0, done.stderr


def test_an_unknown_base_is_a_usage_error_with_a_hint(repo: Path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--base", "origin/nope"], cwd=repo, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "fetch-depth: 0" in done.stderr
