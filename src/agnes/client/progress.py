"""Rich progress bars for `agnes pull`, one per table being downloaded."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn


class RichProgress:
    def __init__(self, console: Console) -> None:
        self._bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                              TransferSpeedColumn(), console=console)
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> RichProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    def start(self, table_id: str, total: int | None) -> None:
        self._tasks[table_id] = self._bars.add_task(table_id, total=total)

    def advance(self, table_id: str, size: int) -> None:
        self._bars.advance(self._tasks[table_id], size)

    def finish(self, table_id: str) -> None:
        task = self._tasks.pop(table_id)
        self._bars.update(task, total=self._bars.tasks[task].completed)
