"""Version, channel and commit of this build.

The image build bakes real values in through AGNES_VERSION / AGNES_CHANNEL /
AGNES_COMMIT; a source checkout reports the package version on channel "dev".
"""

from __future__ import annotations

import os

import msgspec

__version__ = "2026.12.0"


class BuildInfo(msgspec.Struct, frozen=True):
    version: str
    channel: str
    commit: str


def build_info() -> BuildInfo:
    return BuildInfo(
        version=os.environ.get("AGNES_VERSION") or __version__,
        channel=os.environ.get("AGNES_CHANNEL") or "dev",
        commit=os.environ.get("AGNES_COMMIT") or "unknown",
    )
