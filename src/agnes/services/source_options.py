"""Reading a configure body (`{data_source, name?, ...options, ...secrets}`) against its type.

The body is an open object because every type has its own options, so the
checks msgspec would do for a fixed struct happen here: unknown fields are
named together with the options the type accepts, values are type-checked,
secrets are kept apart from options from the first moment, and omitted
fields keep their stored value (defaults on create).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from croniter import croniter

from agnes.errors import AgnesError
from agnes.extract.names import source_name_problem
from agnes.extract.runner import connector_env
from agnes.services.source_types import OptionSpec, SourceType, get_type
from agnes.settings import Settings

COMMON_FIELDS = ("data_source", "name", "schedule", "visible_to_all")
MAX_TEXT = 4096
MAX_SECRET = 16384
MAX_OBJECT_BYTES = 64 * 1024
CRON_MACROS = frozenset({"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"})
_SECRET_LIKE = re.compile(r"secret|passw|token|api_?key|private_?key|credential", re.I)
SCHEDULE_HINT = ('Send five cron fields "minute hour day-of-month month day-of-week" in UTC, e.g. "0 3 * * *" '
                 '(every day at 03:00 UTC) or "*/30 * * * *"; or null to sync only on demand '
                 '(POST /api/admin/configure or PATCH /api/admin/sources/{name} {"schedule": ...}).')


@dataclass
class ConfigureRequest:
    """A parsed body: only what the caller sent (None = reset to default / remove)."""

    type: SourceType
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str | None] = field(default_factory=dict)
    schedule: str | None | msgspec.UnsetType = msgspec.UNSET
    visible_to_all: bool | msgspec.UnsetType = msgspec.UNSET


def accepted_fields(stype: SourceType) -> str:
    own = [o.name for o in stype.options] + [s.name for s in stype.secrets]
    if stype.open_secrets:
        own.append("secrets")
    listed = ", ".join(own) if own else "no options of its own"
    return f"data_source {stype.name!r} accepts: {listed} (and name, schedule, visible_to_all)"


def check_name(name: Any) -> str:
    problem = source_name_problem(name) if isinstance(name, str) else f"source name must be a string, got {name!r}"
    if problem:
        suggestion = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") if isinstance(name, str) else ""
        example = suggestion if suggestion and source_name_problem(suggestion) is None else "sales_csv"
        raise AgnesError("invalid_source_name", problem[0].upper() + problem[1:] + ".",
                         hint=f"Use a lowercase name matching ^[a-z][a-z0-9_]{{0,62}}$ that is not a DuckDB keyword, "
                              f"e.g. {example!r}, in POST /api/admin/configure {{\"name\": ...}}.")
    return name


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _standard_cron(expr: str) -> bool:
    """Five standard cron fields: digits, `*`, `,`, `-`, `/`, and month/day-of-week names only.

    croniter also takes non-standard fields (`R` random, `H` hashed, `L`, `#`, a sixth field);
    a schedule must mean the same to every cron reader, so those are refused.
    """
    fields = expr.split(" ")
    if len(fields) != 5:
        return False
    names: list[tuple[str, ...]] = [(), (), (), _MONTHS, _DAYS]
    for field_, allowed in zip(fields, names, strict=True):
        for part in field_.split(","):
            step_parts = part.split("/")
            if len(step_parts) > 2 or (len(step_parts) == 2 and not step_parts[1].isdigit()):
                return False
            bounds = step_parts[0].split("-")
            if len(bounds) > 2 or ("*" in bounds and bounds != ["*"]):
                return False
            if not all(b == "*" or b.isdigit() or b.lower() in allowed for b in bounds):
                return False
    return True


def check_schedule(value: Any) -> str | None:
    """A cron expression (5 fields or @daily-style, UTC) normalised, or None for manual only."""
    if value is None:
        return None
    expr = " ".join(value.split()) if isinstance(value, str) else ""
    fields_ok = expr in CRON_MACROS or _standard_cron(expr)
    if not expr or not fields_ok or not croniter.is_valid(expr):
        raise AgnesError("invalid_schedule", f"schedule {value!r} is not a valid 5-field cron expression.",
                         hint=SCHEDULE_HINT)
    try:
        croniter(expr, datetime.now(UTC)).get_next(datetime)
    except Exception:  # noqa: BLE001 - croniter's errors for never-firing dates vary by version
        raise AgnesError("invalid_schedule", f"schedule {value!r} never fires (no such date).",
                         hint=SCHEDULE_HINT) from None
    return expr


def next_run(schedule: str | None) -> str | None:
    if not schedule:
        return None
    try:
        at = croniter(schedule, datetime.now(UTC)).get_next(datetime)
    except Exception:  # noqa: BLE001 - a stored schedule that no longer parses shows no next run
        return None
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _check_option(spec: OptionSpec, value: Any, stype: SourceType) -> Any:
    if value is None:
        return None
    wrong = {
        "string": not isinstance(value, str),
        "integer": not isinstance(value, int) or isinstance(value, bool),
        "boolean": not isinstance(value, bool),
        "object": not isinstance(value, dict),
    }[spec.kind]
    if wrong:
        raise AgnesError("invalid_option", f"option {spec.name!r} of data_source {stype.name!r} must be "
                         f"{'an' if spec.kind[0] in 'aeiou' else 'a'} {spec.kind}, got {json.dumps(value)[:80]}.",
                         hint=f"Send {spec.name} as {'an' if spec.kind[0] in 'aeiou' else 'a'} {spec.kind} in POST "
                              f"/api/admin/configure ({spec.description}).")
    low, high = spec.minimum, spec.maximum
    if spec.kind == "integer" and ((low is not None and value < low) or (high is not None and value > high)):
        allowed = f"{low}..{high}" if low is not None and high is not None else (
            f">= {low}" if low is not None else f"<= {high}")
        raise AgnesError("invalid_option", f"option {spec.name!r} of data_source {stype.name!r} must be {allowed}, "
                         f"got {value}.", hint=f"Send {spec.name} as an integer {allowed} in POST "
                         f"/api/admin/configure ({spec.description}), or null for the default ({spec.default}).")
    if isinstance(value, str) and (len(value) > MAX_TEXT or "\x00" in value):
        raise AgnesError("invalid_option", f"option {spec.name!r} is longer than {MAX_TEXT} characters or has a "
                         "NUL character.", hint=f"Send a shorter {spec.name} in POST /api/admin/configure "
                         f"({spec.description}).")
    if isinstance(value, dict):
        if len(msgspec.json.encode(value)) > MAX_OBJECT_BYTES:
            raise AgnesError("invalid_option", f"option {spec.name!r} is larger than {MAX_OBJECT_BYTES // 1024} KiB.",
                             hint="Keep connector options small (POST /api/admin/configure); put data in files "
                                  "or tables.")
        secret_keys = sorted(k for k in value if _SECRET_LIKE.search(str(k)))
        if secret_keys and stype.open_secrets:
            raise AgnesError("invalid_option", f"option {spec.name!r} has {', '.join(secret_keys)}, which looks like "
                             "a secret; options are stored and exported in plain text.",
                             hint='Move it to "secrets": {"ENV_NAME": "value"} in POST /api/admin/configure '
                                  '(encrypted, given to the connector as '
                                  "an environment variable); keep only non-secret settings in options.")
    return value


def _check_secret_value(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_SECRET or "\x00" in value:
        raise AgnesError("invalid_option", f"secret {key!r} must be a non-empty string of at most {MAX_SECRET} "
                         "characters without NUL.", hint=f"Send {key} as a JSON string in POST /api/admin/configure.")
    return value


def _check_open_secrets(value: Any) -> dict[str, str | None]:
    if not isinstance(value, dict):
        raise AgnesError("invalid_option", "secrets must be an object of ENV_NAME -> value.",
                         hint='Send e.g. "secrets": {"MY_API_KEY": "..."} in POST /api/admin/configure; the connector '
                              'reads os.environ["MY_API_KEY"].')
    checked: dict[str, str | None] = {}
    for key, secret in value.items():
        try:
            connector_env(out_dir=Path("/nonexistent"), config={}, secrets={key: "x"}, tables=None,
                          source_name="x", state_dir=Path("/nonexistent"))
        except ValueError as e:
            raise AgnesError("invalid_option", f"secret name {key!r} is not allowed: {e}.",
                             hint="In POST /api/admin/configure use an upper-case environment variable name such as "
                                  "MY_API_KEY (not AGNES_*, "
                                  "PYTHON*, LD_*, PATH, HOME, LANG or TZ).") from None
        checked[key] = _check_secret_value(key, secret)
    return checked


def parse_body(body: Any) -> ConfigureRequest:
    """Split a configure body into options and secrets, refusing anything the type does not know."""
    if not isinstance(body, dict):
        raise AgnesError("validation_failed", "The body must be a JSON object {data_source, name?, ...options}.")
    if "data_source" not in body:
        raise AgnesError("validation_failed", "data_source is required.",
                         hint='Send e.g. {"data_source": "sample"}; GET /schema/openapi.json lists the types.')
    stype = get_type(body["data_source"])
    options_by_name = {o.name: o for o in stype.options}
    secret_names = {s.name for s in stype.secrets}
    options: dict[str, Any] = {}
    secrets: dict[str, str | None] = {}
    for key, value in body.items():
        if key in COMMON_FIELDS:
            continue
        if key in options_by_name:
            options[key] = _check_option(options_by_name[key], value, stype)
        elif key in secret_names:
            secrets[key] = _check_secret_value(key, value)
        elif key == "secrets" and stype.open_secrets:
            secrets.update(_check_open_secrets(value))
        else:
            raise AgnesError("unknown_option", f"Unknown field {key!r} for data_source {stype.name!r}.",
                             hint=f"Remove {key!r} from the POST /api/admin/configure body; {accepted_fields(stype)}.")
    request = ConfigureRequest(type=stype, name="", options=options, secrets=secrets)
    if "schedule" in body:
        request.schedule = check_schedule(body["schedule"])
    if "visible_to_all" in body:
        if not isinstance(body["visible_to_all"], bool):
            raise AgnesError("invalid_option", "visible_to_all must be true or false.",
                             hint="Send visible_to_all as true or false (POST /api/admin/configure or PATCH "
                                  "/api/admin/sources/{name}); true = every user may read this source's tables.")
        request.visible_to_all = body["visible_to_all"]
    name = body.get("name")
    if name is None:
        default_options = {o.name: o.default for o in stype.options} | {k: v for k, v in options.items() if v}
        name = stype.default_name(default_options)
    request.name = check_name(name)
    return request


def merge_options(stype: SourceType, stored: dict[str, Any] | None, given: dict[str, Any],
                  settings: Settings) -> dict[str, Any]:
    """Given values win, then stored ones, then defaults, then the server setting; missing required = error."""
    merged: dict[str, Any] = {}
    for spec in stype.options:
        if spec.name in given:
            value = given[spec.name] if given[spec.name] is not None else spec.default
        elif stored is not None and spec.name in stored:
            value = stored[spec.name]
        else:
            value = spec.default
        if value is None and spec.fallback_env:
            value = settings.env_setting(spec.fallback_env)
        if value is None and spec.required:
            where = f", or set {spec.fallback_env} in the server environment (.env) and restart" \
                if spec.fallback_env else ""
            raise AgnesError("invalid_option", f"option {spec.name!r} is required for data_source {stype.name!r}.",
                             hint=f"Add \"{spec.name}\" ({spec.description}) to the body of POST "
                                  f"/api/admin/configure{where}.")
        if value is not None:
            merged[spec.name] = value
    return merged


Secrets = dict[str, tuple[str, str | None]]  # key -> (plaintext, env var it came from)


def merge_secrets(stype: SourceType, stored: Secrets, given: dict[str, str | None], settings: Settings,
                  refs: dict[str, str] | None = None) -> Secrets:
    """Stored secrets updated by the body; required ones fall back to the server environment."""
    merged = dict(stored)
    refs = refs or {}
    for key, value in given.items():
        if value is None:
            if any(s.name == key and s.required for s in stype.secrets):
                raise AgnesError("invalid_option", f"secret {key!r} is required for data_source {stype.name!r} "
                                 "and cannot be removed.", hint=f"Send a new value for {key} instead of null in POST "
                                 "/api/admin/configure.")
            merged.pop(key, None)
        elif key in stored and stored[key][0] == value and key not in refs:
            continue  # same value again: keep where it came from
        else:
            merged[key] = (value, refs.get(key))
    for spec in stype.secrets:
        if spec.name in merged:
            continue
        fallback = settings.env_setting(spec.fallback_env) if spec.fallback_env else None
        if fallback is not None:
            merged[spec.name] = (fallback, spec.fallback_env)
        elif spec.required:
            where = f" or set {spec.fallback_env} in the server environment (.env) and restart" \
                if spec.fallback_env else ""
            raise AgnesError("missing_credentials", f"data_source {stype.name!r} needs the secret {spec.name!r}: "
                             f"{spec.description}", hint=f"Pass \"{spec.name}\" in the body of POST "
                             f"/api/admin/configure{where}.")
    return merged
