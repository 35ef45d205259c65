"""Memory DuckDB's `memory_limit` does not see: a process-wide cap, and the guard's size checks.

Measured on DuckDB 1.5.5: joins, sorts, aggregates and `string_agg` stop cleanly at
`memory_limit`, but single values built by scalar functions do not -- with a
256 MB limit, `repeat('x', 1e9)` allocated 1 GB and `len(range(1e9))` (8 GB)
got the process killed by the kernel. With RLIMIT_DATA set, the same
allocations fail inside DuckDB as a clean "Out of Memory" error and the
catalog keeps answering. The guard refuses obvious one-liners
(`generated_size_error`: constant sizes only, easily dodged); the cap is
the wall. Call `apply_memory_cap` once at server start (Linux; RLIMIT_DATA
counts private anonymous mappings since 4.7, i.e. what malloc/jemalloc use).
"""

from __future__ import annotations

import re
import resource
from typing import Any

MAX_GENERATED = 1_000_000  # elements/characters one constant-sized generator call may make
# name -> index of the argument that sizes the result
_SIZED_BY = {"repeat": 1, "lpad": 1, "rpad": 1, "list_resize": 1, "array_resize": 1}
_NUMERIC = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER",
                      "UBIGINT", "HUGEINT", "UHUGEINT", "DOUBLE", "FLOAT", "DECIMAL", "VARCHAR"})

_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
          "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}


def parse_size(text: str) -> int:
    """'2GB' / '512MiB' / '1000000' -> bytes (DuckDB's units: GB is 1000**3, GiB 1024**3)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 512MB, 2GB, 4GiB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def recommended_cap(memory_limit: str, headroom: str = "2GiB") -> int:
    """DuckDB's buffer pool plus room for Python, Arrow results and untracked DuckDB values."""
    return parse_size(memory_limit) + parse_size(headroom)


def apply_memory_cap(max_bytes: int) -> int:
    """Lower this process's RLIMIT_DATA to `max_bytes` (never raise it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limits = [limit for limit in (soft, hard, max_bytes) if limit != resource.RLIM_INFINITY]
    new = min(limits)
    resource.setrlimit(resource.RLIMIT_DATA, (new, hard))
    return new


def generated_size_error(name: str, args: list[dict[str, Any]]) -> str | None:
    """Why a call to `name` with these parse-tree `args` would build too big a value, or None.

    Only constant sizes are judged: these checks stop one-liners, the process cap stops the rest."""
    size: float | None = None
    if name in ("range", "generate_series"):  # the list-returning scalar forms
        nums = [_number(a) for a in args]
        if args and None not in nums:
            start, stop, step = (0, nums[0], 1) if len(nums) == 1 else (*nums[:2], nums[2] if len(nums) > 2 else 1)
            size = abs((stop - start) / step) if step else float("inf")
    elif name in _SIZED_BY and len(args) > _SIZED_BY[name]:
        size = _number(args[_SIZED_BY[name]])
    elif name in ("printf", "format") and args and args[0].get("class") == "CONSTANT":
        fmt = str(args[0]["value"].get("value", ""))
        specs = re.findall(r"%[^a-zA-Z%]*" if name == "printf" else r"\{[^{}]*\}", fmt)
        star = name == "printf" and any("*" in spec for spec in specs)
        size = float("inf") if star else max((int(n) for s in specs for n in re.findall(r"\d+", s)), default=0)
    if size is not None and size > MAX_GENERATED:
        return f"{name}() would build a value of {size:,.0f} elements; the limit is {MAX_GENERATED:,}."
    return None


def _number(e: dict[str, Any]) -> float | None:
    """The value of a constant numeric expression, or None (constants, casts, + - * ^)."""
    cls = e.get("class")
    if cls == "CAST":
        return _number(e["child"])
    if cls == "CONSTANT":
        value, type_ = e["value"].get("value"), e["value"]["type"]
        if type_.get("id") not in _NUMERIC or value is None:
            return None
        if isinstance(value, dict):  # HUGEINT
            return float(value.get("upper", 0) * 2**64 + value.get("lower", 0))
        if type_.get("id") == "DECIMAL":
            return value / 10 ** (type_.get("type_info") or {}).get("scale", 0)
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    if cls == "FUNCTION" and e.get("function_name") in ("+", "-", "*", "^", "**"):
        nums = [_number(c) for c in e.get("children", [])]
        if None in nums or not nums:
            return None
        op = e["function_name"]
        try:
            if len(nums) == 1:
                return -nums[0] if op == "-" else nums[0]
            a, b = nums[0], nums[1]
            if op in ("^", "**"):
                return None if a < 0 else float("inf") if abs(b) > 64 else float(a**b)
            return {"+": a + b, "-": a - b, "*": a * b}[op]
        except OverflowError:
            return float("inf")
    return None
