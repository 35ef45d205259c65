"""The one-time setup token."""

from __future__ import annotations

import hashlib
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agnes.errors import StartupError
from agnes.security.setup_token import (
    ensure_setup_token,
    read_setup_token,
    remove_setup_token,
    setup_token_hash,
    setup_token_matches,
)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_once_and_stable_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    token = ensure_setup_token(state, None)
    assert len(token) >= 32
    assert (state / "setup-token").read_text() == token
    assert mode_of(state / "setup-token") == 0o600
    assert ensure_setup_token(state, None) == token
    assert ensure_setup_token(state, "") == token
    assert read_setup_token(state) == token


def test_preset_is_written_and_returned(tmp_path: Path) -> None:
    state = tmp_path / "state"
    preset = "my-preset-token-123"
    assert ensure_setup_token(state, preset) == preset
    assert read_setup_token(state) == preset
    assert mode_of(state / "setup-token") == 0o600


def test_preset_replaces_a_different_old_token(tmp_path: Path) -> None:
    state = tmp_path / "state"
    old = ensure_setup_token(state, None)
    preset = "a-brand-new-preset-token"
    assert ensure_setup_token(state, preset) == preset
    assert read_setup_token(state) == preset != old
    assert mode_of(state / "setup-token") == 0o600
    assert [p.name for p in state.iterdir()] == ["setup-token"]
    assert ensure_setup_token(state, None) == preset  # kept after the variable is unset


def test_short_preset_refuses(tmp_path: Path) -> None:
    with pytest.raises(StartupError) as info:
        ensure_setup_token(tmp_path, "too-short")
    assert info.value.code == "secret_too_short"
    assert "AGNES_SETUP_TOKEN" in info.value.message and "16" in info.value.message
    assert not (tmp_path / "setup-token").exists()


def test_empty_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "setup-token").write_text("")
    assert read_setup_token(tmp_path) is None
    token = ensure_setup_token(tmp_path, None)
    assert token and read_setup_token(tmp_path) == token


def test_race_between_processes_yields_one_token(tmp_path: Path) -> None:
    state = tmp_path / "state"
    go = tmp_path / "go"
    script = (
        "import sys, time\nfrom pathlib import Path\n"
        "from agnes.security.setup_token import ensure_setup_token\n"
        "Path(sys.argv[2]).touch()\n"
        "while not Path(sys.argv[1]).exists():\n    time.sleep(0.001)\n"
        f"print(ensure_setup_token(Path({str(state)!r}), None))\n"
    )
    ready = [tmp_path / f"ready-{i}" for i in range(4)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(go), str(r)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in ready
    ]
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in ready):
        assert time.monotonic() < deadline, "children did not start"
        time.sleep(0.01)
    go.touch()
    outputs = set()
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        outputs.add(out.strip())
    assert len(outputs) == 1
    assert read_setup_token(state) == outputs.pop()
    assert mode_of(state / "setup-token") == 0o600


def test_remove(tmp_path: Path) -> None:
    ensure_setup_token(tmp_path, None)
    remove_setup_token(tmp_path)
    assert read_setup_token(tmp_path) is None
    assert not (tmp_path / "setup-token").exists()
    remove_setup_token(tmp_path)  # missing is fine
    assert read_setup_token(tmp_path / "never-created") is None


def test_hash_and_match() -> None:
    token = "the-setup-token-value"
    expected = setup_token_hash(token)
    assert expected == hashlib.sha256(token.encode()).hexdigest()
    assert setup_token_matches(expected, token)
    assert setup_token_matches(expected, f"  {token}\n")  # pasted with whitespace
    assert not setup_token_matches(expected, token + "x")
    assert not setup_token_matches(expected, "")
    assert not setup_token_matches(expected, "   ")
    assert not setup_token_matches(expected, None)
    assert not setup_token_matches("", token)
