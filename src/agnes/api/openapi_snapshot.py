"""The committed OpenAPI snapshot: `python -m agnes.api.openapi_snapshot --write`.

The breaking-change gate diffs the snapshot on the base branch against the
PR's live schema, so the snapshot must be deterministic: sorted keys, fixed
indentation, no machine-specific values.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).resolve().parents[3] / "contract_tests" / "snapshots" / "openapi.json"


def live_schema() -> dict[str, Any]:
    from agnes.app import create_app
    from agnes.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings.load({"DATA_DIR": tmp}))
        return app.openapi_schema.to_schema()


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render(live_schema())
    if "--write" in args:
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(text, encoding="utf-8")
        print(f"wrote {SNAPSHOT}")
        return 0
    current = SNAPSHOT.read_text(encoding="utf-8") if SNAPSHOT.exists() else ""
    if current != text:
        print(f"{SNAPSHOT} is stale: run `make openapi-snapshot` and commit it.", file=sys.stderr)
        return 1
    print("OpenAPI snapshot is up to date.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
