"""Connector folders: discovery (built-in + mounted custom) and requirements.txt checks.

Agnes never pip-installs at sync time (no network assumed, no surprise code);
a connector whose packages are missing fails fast with the list of what to
add to the image instead of an ImportError deep inside its run.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

try:  # packaging ships with pip/setuptools environments; fall back to a simple parser.
    from packaging.requirements import InvalidRequirement, Requirement
except ImportError:  # pragma: no cover - exercised only without packaging
    Requirement = None  # type: ignore[assignment,misc]
    InvalidRequirement = ValueError  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)
CONNECTOR_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_SIMPLE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:==\s*([^\s;,]+))?")


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _check_line(line: str) -> str | None:
    """A problem with one requirement line, or None when it is satisfied."""
    if Requirement is not None:
        try:
            req = Requirement(line)
        except InvalidRequirement as e:
            return f"{line} (cannot parse: {e})"
        if req.marker is not None and not req.marker.evaluate():
            return None
        version = _installed(req.name)
        if version is None:
            return f"{line} (not installed)"
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            return f"{line} (installed {version})"
        return None
    m = _SIMPLE.match(line)
    if not m:
        return f"{line} (cannot parse)"
    version = _installed(m.group(1))
    if version is None:
        return f"{line} (not installed)"
    if m.group(2) and m.group(2) != version:
        return f"{line} (installed {version})"
    return None


def requirement_problems(text: str) -> tuple[list[str], list[str]]:
    """Return (problems, the requirement lines to install) for a requirements.txt text.

    Option lines (`-r`, `--index-url`, `-e`) cannot be checked offline and are
    reported, so the author sees them instead of a silent skip.
    """
    problems: list[str] = []
    to_install: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            problems.append(f"{line} (pip options are not supported in a connector requirements.txt)")
            continue
        problem = _check_line(line)
        if problem:
            problems.append(problem)
            to_install.append(line.split(";", 1)[0].strip())
    return problems, to_install


class ConnectorNotFound(LookupError):
    """No connector folder of that name; the message lists the available ones."""


@dataclass(frozen=True)
class ConnectorInfo:
    name: str
    path: Path  # the connector folder (cwd of the child)
    origin: str  # 'builtin' | 'custom'

    @property
    def extractor(self) -> Path:
        return self.path / "extractor.py"

    @property
    def requirements(self) -> Path | None:
        req = self.path / "requirements.txt"
        return req if req.is_file() else None


def list_connectors(builtin_dir: Path, custom_dir: Path | None) -> list[ConnectorInfo]:
    """Built-in connectors first; a custom one with a built-in's name is skipped (logged)."""
    found: dict[str, ConnectorInfo] = {}
    for origin, base in (("builtin", builtin_dir), ("custom", custom_dir)):
        if base is None or not Path(base).is_dir():
            continue
        for folder in sorted(Path(base).iterdir()):
            if not (folder / "extractor.py").is_file():
                continue
            if not CONNECTOR_NAME_RE.match(folder.name):
                log.warning("connector folder %s skipped: its name must match %s", folder, CONNECTOR_NAME_RE.pattern)
            elif folder.name in found:
                log.warning("custom connector %s skipped: a built-in connector has that name; rename it", folder)
            else:
                found[folder.name] = ConnectorInfo(folder.name, folder.resolve(), origin)
    return list(found.values())


def find_connector(name: str, *, builtin_dir: Path, custom_dir: Path | None) -> ConnectorInfo:
    """The connector folder called `name`; ConnectorNotFound lists what exists."""
    infos = list_connectors(builtin_dir, custom_dir)
    for info in infos:
        if info.name == name:
            return info
    available = ", ".join(f"{i.name} ({i.origin})" for i in infos) or "none"
    where = f"{builtin_dir}" + (f" and {custom_dir}" if custom_dir else "")
    raise ConnectorNotFound(
        f"no connector named {name!r} in {where}; available: {available}. A custom connector is a folder "
        f"{custom_dir or '<custom dir>'}/{name}/ holding extractor.py (see docs/connector-runtime.md)"
    )


def check_requirements(info: ConnectorInfo) -> str | None:
    """A message naming unsatisfied requirements.txt lines and how to install them, or None."""
    if info.requirements is None:
        return None
    problems, specs = requirement_problems(info.requirements.read_text(encoding="utf-8", errors="replace"))
    if not problems:
        return None
    if not specs:  # only pip option lines (-r, --index-url, -e): nothing to name in a pip install
        return (
            f"connector {info.name!r} has a requirements.txt Agnes cannot check: {'; '.join(problems)}. "
            f"List each package as a plain requirement line instead (e.g. `requests==2.32.3`, one per line) in "
            f"{info.requirements}, install those packages into the Agnes image (a Dockerfile `FROM` the Agnes image "
            f"with `RUN pip install <package>==<version>`), or delete the option lines if nothing is needed"
        )
    quoted = " ".join(f"'{s}'" for s in specs)
    return (
        f"connector {info.name!r} needs packages that are not installed: {'; '.join(problems)}. "
        f"Install them into the Agnes image (a Dockerfile `FROM` the Agnes image with `RUN pip install {quoted}`) "
        f"or, outside Docker, run: {sys.executable} -m pip install {quoted}"
    )
