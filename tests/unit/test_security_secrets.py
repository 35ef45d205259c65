"""Instance secrets and the race-free file helpers they rest on."""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agnes.errors import StartupError
from agnes.security import files
from agnes.security.files import read_secret_file, replace_file, write_once
from agnes.security.secrets import (
    SECRET_SOURCES,
    InstanceSecrets,
    key_fingerprint,
    load_instance_secrets,
)

LONG = "x" * 40


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def race(tmp_path: Path, setup: str, action: str, n: int = 4) -> list[str]:
    """Run `action` in n child processes released at the same instant (after `setup`); their output."""
    go = tmp_path / "go"
    script = (
        f"import sys, time\nfrom pathlib import Path\n{setup}\n"
        "Path(sys.argv[2]).touch()\n"
        "while not Path(sys.argv[1]).exists():\n    time.sleep(0.001)\n"
        f"{action}\n"
    )
    ready = [tmp_path / f"ready-{i}" for i in range(n)]
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
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        outputs.append(out.strip())
    return outputs


# --- files ---------------------------------------------------------------------------


def test_write_once_creates_0600_and_keeps_first_content(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "secret"
    assert write_once(path, b"first") == b"first"
    assert write_once(path, b"second") == b"first"
    assert path.read_bytes() == b"first"
    assert mode_of(path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret"]  # no temp files left


def test_write_once_race_between_processes_has_one_winner(tmp_path: Path) -> None:
    target = tmp_path / "state" / "secret"
    setup = "import os\nfrom agnes.security.files import write_once"
    action = f"print(write_once(Path({str(target)!r}), f'pid-{{os.getpid()}}'.encode()).decode())"
    outputs = race(tmp_path, setup, action, n=6)
    assert len(set(outputs)) == 1
    assert target.read_text() == outputs[0]
    assert mode_of(target) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["secret"]


def test_write_once_without_hard_links_falls_back_to_a_lock(tmp_path: Path, monkeypatch) -> None:
    def no_link(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(files.os, "link", no_link)
    path = tmp_path / "secret"
    assert write_once(path, b"one") == b"one"
    assert write_once(path, b"two") == b"one"
    assert mode_of(path) == 0o600
    assert not list(tmp_path.glob("*.tmp"))


def test_write_once_other_link_errors_propagate(tmp_path: Path, monkeypatch) -> None:
    def broken_link(src, dst):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(files.os, "link", broken_link)
    with pytest.raises(OSError, match="I/O error"):
        write_once(tmp_path / "secret", b"x")
    assert list(tmp_path.iterdir()) == []


def test_replace_file_swaps_content_atomically(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("old")
    path.chmod(0o644)
    replace_file(path, b"new")
    assert path.read_bytes() == b"new"
    assert mode_of(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["token"]


def test_read_secret_file_missing_is_none(tmp_path: Path) -> None:
    assert read_secret_file(tmp_path / "nope") is None


def test_read_secret_file_narrows_broad_permissions(tmp_path: Path, caplog) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"value")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="agnes.security.files"):
        assert read_secret_file(path) == b"value"
    assert mode_of(path) == 0o600
    assert "644" in caplog.text and "0600" in caplog.text


# --- instance secrets ------------------------------------------------------------------


def test_generates_three_distinct_keys_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = load_instance_secrets(state, {})
    keys = [first.jwt_key, first.session_key, first.encryption_key]
    assert len(set(keys)) == 3
    assert all(len(k) >= 32 for k in keys)
    for _, _, name in SECRET_SOURCES:
        assert mode_of(state / name) == 0o600
    assert load_instance_secrets(state, {}) == first


def test_no_fixed_default_two_instances_differ(tmp_path: Path) -> None:
    a = load_instance_secrets(tmp_path / "a", {})
    b = load_instance_secrets(tmp_path / "b", {})
    assert a.jwt_key != b.jwt_key and a.session_key != b.session_key and a.encryption_key != b.encryption_key


def test_race_between_processes_yields_the_same_keys(tmp_path: Path) -> None:
    state = tmp_path / "state"
    setup = "import json\nfrom agnes.security.secrets import load_instance_secrets"
    action = (
        f"s = load_instance_secrets(Path({str(state)!r}), {{}})\n"
        "print(json.dumps([s.jwt_key.decode(), s.session_key.decode(), s.encryption_key.decode()]))"
    )
    outputs = race(tmp_path, setup, action, n=4)
    assert len(set(outputs)) == 1
    jwt_key, session_key, encryption_key = json.loads(outputs[0])
    assert (state / ".jwt_secret").read_text() == jwt_key
    assert (state / ".session_secret").read_text() == session_key
    assert (state / ".encryption_key").read_text() == encryption_key
    for _, _, name in SECRET_SOURCES:
        assert mode_of(state / name) == 0o600
    assert sorted(p.name for p in state.iterdir()) == sorted(name for _, _, name in SECRET_SOURCES)


def test_env_beats_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / ".jwt_secret").write_text("f" * 40)
    secrets = load_instance_secrets(state, {"JWT_SECRET_KEY": "e" * 40, "AGNES_ENCRYPTION_KEY": "k" * 33})
    assert secrets.jwt_key == b"e" * 40
    assert secrets.encryption_key == b"k" * 33
    assert (state / ".jwt_secret").read_text() == "f" * 40  # the file is left alone
    assert not (state / ".encryption_key").exists()  # nothing is written for env secrets


def test_empty_env_value_falls_back_to_the_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / ".session_secret").write_text("s" * 40 + "\n")  # hand-written, trailing newline
    assert load_instance_secrets(state, {"SESSION_SECRET": ""}).session_key == b"s" * 40


@pytest.mark.parametrize("var", [var for _, var, _ in SECRET_SOURCES])
def test_short_env_secret_refuses_naming_the_variable(tmp_path: Path, var: str) -> None:
    with pytest.raises(StartupError) as info:
        load_instance_secrets(tmp_path / "state", {var: "twelve-bytes"})
    assert info.value.code == "secret_too_short"
    assert info.value.message == f"{var} is 12 bytes; at least 32 are required"


def test_short_file_secret_refuses_naming_the_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / ".encryption_key").write_text("short")
    with pytest.raises(StartupError) as info:
        load_instance_secrets(state, {})
    assert info.value.code == "secret_too_short"
    assert str(state / ".encryption_key") in info.value.message
    assert "5 bytes" in info.value.message


def test_unusable_state_dir_is_a_startup_error(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    with pytest.raises(StartupError) as info:
        load_instance_secrets(blocker / "state", {})
    assert info.value.code == "data_dir_unusable"
    assert str(blocker / "state") in info.value.message


def test_repr_does_not_leak_keys() -> None:
    secrets = InstanceSecrets(jwt_key=b"j" * 32, session_key=b"s" * 32, encryption_key=b"e" * 32)
    assert "jjjj" not in repr(secrets) and "eeee" not in repr(secrets)


def test_key_fingerprint_is_stable_distinct_and_opaque() -> None:
    key = os.urandom(32)
    fp = key_fingerprint(key)
    assert fp == key_fingerprint(key)
    assert len(fp) == 32 and all(c in "0123456789abcdef" for c in fp)
    assert fp != key_fingerprint(os.urandom(32))
    assert key.hex()[:8] not in fp
