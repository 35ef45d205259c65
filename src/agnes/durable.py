"""Make a new or renamed directory entry survive a power cut: fsync the directory itself.

One helper for every writer that publishes by rename (secret files, extract runs, uploads,
the analyst client's downloads); `os.replace` alone is atomic but not durable.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
