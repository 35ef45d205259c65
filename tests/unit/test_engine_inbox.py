"""engine/inbox.py on real folders: what is taken, what is refused, and what a refused run leaves behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from contract_tests.fixtures import build_valid_extract

from agnes.engine.inbox import InboxError, give_back, reject, take_run


def _run(root: Path, name: str = "partner") -> Path:
    folder = build_valid_extract(root / "inbox" / name)
    (folder / "READY").touch()
    return folder


def _staging(root: Path) -> Path:
    staging = root / "staging"
    staging.mkdir()
    return staging


def test_a_fifo_deep_in_the_run_is_refused_before_anything_moves(tmp_path: Path):
    folder, staging = _run(tmp_path), _staging(tmp_path)
    os.mkfifo(folder / "data" / "events" / "part-2.parquet")
    with pytest.raises(InboxError, match=r"data/events/part-2.parquet is not a regular file or folder"):
        take_run(folder, staging)
    assert list(staging.iterdir()) == [] and (folder / "READY").exists()


def test_a_linked_data_folder_is_refused_and_named(tmp_path: Path):
    folder, staging = _run(tmp_path), _staging(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (folder / "data" / "events").rename(elsewhere)
    (folder / "data" / "events").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(InboxError, match=r"data/events is a symbolic link \(to .*elsewhere\)"):
        take_run(folder, staging)
    assert list(staging.iterdir()) == []


def test_reject_replaces_a_linked_folder_and_leaves_its_target_alone(tmp_path: Path):
    target = _run(tmp_path, "target")
    link = tmp_path / "inbox" / "linked"
    link.symlink_to(target, target_is_directory=True)
    with pytest.raises(InboxError, match="itself is a symbolic link"):
        take_run(link, _staging(tmp_path))
    reject(link, "inbox/linked/ was not published: it is a symbolic link")
    assert link.is_dir() and not link.is_symlink() and "removed the link" in (link / "REJECTED").read_text()
    assert sorted(p.name for p in target.iterdir()) == ["READY", "data", "extract.duckdb"]


def test_rejected_is_never_written_through_a_planted_link(tmp_path: Path):
    folder = _run(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (folder / "REJECTED").symlink_to(victim)
    reject(folder, "refused")
    assert victim.read_text() == "keep me"
    assert not (folder / "REJECTED").is_symlink() and (folder / "REJECTED").read_text().startswith("refused")
    assert not (folder / "READY").exists()


def test_give_back_puts_a_refused_run_back_without_ready(tmp_path: Path):
    folder, staging = _run(tmp_path), _staging(tmp_path)
    assert take_run(folder, staging) == ["data", "extract.duckdb"]
    assert give_back(folder, staging, "broken: rows_mismatch") is True
    assert sorted(p.name for p in folder.iterdir()) == ["REJECTED", "data", "extract.duckdb"]
    assert "rows_mismatch" in (folder / "REJECTED").read_text() and list(staging.iterdir()) == []


def test_give_back_of_a_run_that_was_not_judged_marks_it_ready_again(tmp_path: Path):
    folder, staging = _run(tmp_path), _staging(tmp_path)
    take_run(folder, staging)
    assert give_back(folder, staging, None) is True
    assert (folder / "READY").is_file() and not (folder / "REJECTED").exists()
    assert (folder / "extract.duckdb").is_file()


def test_give_back_never_touches_the_producers_next_run(tmp_path: Path):
    folder, staging = _run(tmp_path), _staging(tmp_path)
    take_run(folder, staging)
    (folder / "extract.duckdb").write_bytes(b"the next run")  # the producer is already handing over again
    (folder / "READY").touch()
    assert give_back(folder, staging, "broken") is False
    assert (folder / "extract.duckdb").read_bytes() == b"the next run" and (folder / "READY").exists()
    assert "newer run" in (folder / "REJECTED").read_text()
