"""Version, channel and commit of this build.

The image build bakes real values in through AGNES_VERSION / AGNES_CHANNEL /
AGNES_COMMIT; `agnes.settings` reads and validates them (`Settings.build`,
`agnes.settings.build_info()`). A source checkout reports the package version
on channel "dev".
"""

from __future__ import annotations

import msgspec

__version__ = "2026.12.0"
CHANNELS = ("dev", "stable")  # release channels (docs/releases.md); `deprecated-*` is a tag, not a channel


class BuildInfo(msgspec.Struct, frozen=True):
    version: str
    channel: str
    commit: str
