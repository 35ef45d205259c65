"""Run folders, the `current`/`previous` pointers, pruning, rollback and leftovers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agnes.engine import publish as pub


def _stage(extracts: Path, source: str, marker: str = "x") -> Path:
    staging = pub.new_staging_dir(extracts, source)
    (staging / "data").mkdir()
    (staging / "extract.duckdb").write_text(marker)
    return staging


def test_layout_and_run_id(tmp_path: Path) -> None:
    staging = _stage(tmp_path, "crm")
    assert staging.parent == tmp_path / "crm" / "staging"
    assert pub.RUN_ID_RE.match(staging.name)
    run = pub.publish(tmp_path, "crm", staging)
    assert run.source == "crm" and run.previous_run_id is None
    assert run.path == tmp_path / "crm" / "runs" / staging.name
    assert os.readlink(tmp_path / "crm" / "current") == f"runs/{staging.name}"
    assert pub.current_run(tmp_path, "crm") == run.path.resolve()
    assert not staging.exists() and not (staging.parent / f"{staging.name}.lock").exists()
    assert pub.published_runs(tmp_path) == {"crm": run.path.resolve()}


def test_run_ids_sort_by_time() -> None:
    ids = [pub.new_run_id() for _ in range(50)]
    assert [i[:22] for i in ids] == sorted(i[:22] for i in ids)


@pytest.mark.parametrize("name", ["Main", "main", "1abc", "a-b", "", "memory", "x" * 64, "../etc"])
def test_bad_source_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(pub.PublishError):
        pub.new_staging_dir(tmp_path, name)


def test_publish_refuses_foreign_folders(tmp_path: Path) -> None:
    other = _stage(tmp_path, "other")
    with pytest.raises(pub.PublishError, match="not a staging folder of source 'crm'"):
        pub.publish(tmp_path, "crm", other)
    outside = tmp_path / "elsewhere" / pub.new_run_id()
    outside.mkdir(parents=True)
    with pytest.raises(pub.PublishError):
        pub.publish(tmp_path, "crm", outside)
    (tmp_path / "crm" / "staging").mkdir(parents=True)
    link = tmp_path / "crm" / "staging" / pub.new_run_id()
    link.symlink_to(outside)
    with pytest.raises(pub.PublishError, match="symlink"):
        pub.publish(tmp_path, "crm", link)
    wrong_name = tmp_path / "crm" / "staging" / "not-a-run-id"
    wrong_name.mkdir()
    with pytest.raises(pub.PublishError):
        pub.publish(tmp_path, "crm", wrong_name)


def test_keeps_current_previous_and_prunes_older(tmp_path: Path) -> None:
    runs = [pub.publish(tmp_path, "crm", _stage(tmp_path, "crm", str(i))) for i in range(5)]
    on_disk = sorted(p.name for p in (tmp_path / "crm" / "runs").iterdir())
    assert on_disk == sorted([runs[-1].run_id, runs[-2].run_id])
    assert runs[-1].previous_run_id == runs[-2].run_id
    assert os.readlink(tmp_path / "crm" / "previous") == f"runs/{runs[-2].run_id}"


def test_prune_never_deletes_current_or_previous_even_if_ids_are_older(tmp_path: Path) -> None:
    early = _stage(tmp_path, "crm", "early")  # staged first -> smallest id
    for i in range(3):
        pub.publish(tmp_path, "crm", _stage(tmp_path, "crm", str(i)))
    late = pub.publish(tmp_path, "crm", early)  # published last
    assert pub.current_run(tmp_path, "crm") == late.path.resolve()
    assert (late.path / "extract.duckdb").read_text() == "early"
    assert (tmp_path / "crm" / "runs" / late.previous_run_id).is_dir()


def test_point_at_follows_the_record_and_repairs_pointers(tmp_path: Path) -> None:
    first = pub.publish(tmp_path, "crm", _stage(tmp_path, "crm", "1"))
    second = pub.publish(tmp_path, "crm", _stage(tmp_path, "crm", "2"))
    folder = tmp_path / "crm"
    pub._switch(folder, "previous", second.run_id)  # a kill between the two switches: previous == current
    assert pub.point_at(tmp_path, "crm", second.run_id, first.run_id) is True
    assert (os.readlink(folder / "current"), os.readlink(folder / "previous")) == (
        f"runs/{second.run_id}", f"runs/{first.run_id}")
    assert pub.point_at(tmp_path, "crm", second.run_id, first.run_id) is False  # idempotent
    assert pub.point_at(tmp_path, "crm", first.run_id, second.run_id) is True  # what a rollback records
    assert (pub.current_run(tmp_path, "crm") / "extract.duckdb").read_text() == "1"
    with pytest.raises(pub.PublishError, match="missing on disk"):
        pub.point_at(tmp_path, "crm", pub.new_run_id(), None)
    installed = pub.install_run(tmp_path, "crm", _stage(tmp_path, "crm", "3"))  # not pointed at: not current
    assert pub.current_run(tmp_path, "crm").name == first.run_id and installed.is_dir()


def test_remove_source(tmp_path: Path) -> None:
    pub.publish(tmp_path, "crm", _stage(tmp_path, "crm"))
    pub.remove_source(tmp_path, "crm")
    assert not (tmp_path / "crm").exists()
    assert pub.current_run(tmp_path, "crm") is None
    assert pub.published_runs(tmp_path) == {}
    pub.remove_source(tmp_path, "crm")  # idempotent


def test_cleanup_leftovers_spares_live_staging_and_published_runs(tmp_path: Path) -> None:
    run = pub.publish(tmp_path, "crm", _stage(tmp_path, "crm"))
    live = _stage(tmp_path, "crm")  # lock still held by this process
    dead = tmp_path / "crm" / "staging" / pub.new_run_id()  # no lock holder: a killed writer
    dead.mkdir()
    (dead / "half.parquet").write_bytes(b"PAR1")
    stray = tmp_path / "crm" / f"{pub._TMP_LINK}current-dead"
    stray.symlink_to("runs/nothing")
    trash = tmp_path / f"{pub._TRASH}old-1234"
    trash.mkdir()
    removed = pub.cleanup_leftovers(tmp_path)
    assert set(removed) == {dead, stray, trash}
    assert live.is_dir() and run.path.is_dir()
    assert pub.current_run(tmp_path, "crm") == run.path.resolve()
    pub.discard_staging(live)
    assert not live.exists()
    assert pub.cleanup_leftovers(tmp_path) == []


def test_current_run_absent_or_dangling(tmp_path: Path) -> None:
    assert pub.current_run(tmp_path, "crm") is None
    (tmp_path / "crm").mkdir()
    (tmp_path / "crm" / "current").symlink_to("runs/gone")
    assert pub.current_run(tmp_path, "crm") is None
