"""Spotting secrets where only env-var names or secret-free URLs belong.

Whatever is found is shown masked: the report may end up in a CI log, a job
row or a chat with an AI agent, and must not spread the secret further.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from ..spec import ENV_VAR_NAME_RE

_TOKEN_PREFIXES = ("sk-", "sk_", "ghp_", "gho_", "github_pat_", "glpat-", "xox", "akia", "asia", "eyj", "ya29.")
_URL_USERINFO = re.compile(r"^(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s:]*:)(?P<secret>[^/@\s]+)(?P<tail>@)")
#: A parameter whose name ends in one of these words carries a secret
#: (`password=`, `motherduck_token=`, `client_secret=`, `aws_secret_access_key=` …).
_KEY_WORDS = r"password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key"
_URL_PARAM = re.compile(
    rf"(?i)(?P<head>(?:^|[?&;:\s])[\w.-]*?(?:{_KEY_WORDS})\s*=\s*)(?P<secret>'[^']*'|[^&;\s]+)"
)


def mask(value: str) -> str:
    """Two leading characters and the length — enough to recognise, not to use."""
    if len(value) < 8:
        return f"*** ({len(value)} chars)"
    return f"{value[:2]}*** ({len(value)} chars)"


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def looks_like_secret(value: str) -> bool:
    """Heuristics for API keys and tokens: known prefixes, long random runs, high entropy."""
    low = value.lower()
    if low.startswith(_TOKEN_PREFIXES) or len(value) >= 64:
        return True
    for part in re.split(r"[_\W]+", value):
        has_digit = any(c.isdigit() for c in part)
        has_alpha = any(c.isalpha() for c in part)
        if len(part) >= 16 and has_digit and has_alpha:
            return True
        if len(part) >= 24 and entropy(part) >= 3.5:
            return True
    return len(value) >= 20 and entropy(value) >= 4.0 and not ENV_VAR_NAME_RE.match(value)


def is_env_var_name(value: str) -> bool:
    return bool(ENV_VAR_NAME_RE.match(value)) and not looks_like_secret(value)


def url_secret(url: str) -> str | None:
    """The URL with its secret masked, or None when it carries none."""
    found = False

    def _sub(m: re.Match[str]) -> str:
        nonlocal found
        found = True
        return m.group("head") + "***" + (m.groupdict().get("tail") or "")

    masked = _URL_USERINFO.sub(_sub, url, count=1)
    masked = _URL_PARAM.sub(_sub, masked)
    return masked if found else None
