"""exchange_rates: a Tier B (standalone container) connector for Agnes.

It runs in its own image, outside Agnes, and hands over a finished extract
through the inbox: it writes `extract.duckdb` (+ `data/*.parquet`) into
$AGNES_INBOX (e.g. /data/inbox/exchange_rates) and creates `READY` last. Agnes
validates the run against the extract contract, publishes it atomically and
serves it as source `exchange_rates` (type `external`). If Agnes refuses a
run, it writes the reason into `REJECTED` in the same folder.

Only the Python standard library and duckdb (pinned to the version Agnes
reads) are used, so the same steps work in any language: the contract is
just a DuckDB file with a `_meta` table beside Parquet files.

Environment:
  AGNES_INBOX       the inbox folder of this source (its name is the source name)
  RATES_API_URL     JSON API answering [{"day": "2024-03-01", "currency": "USD", "rate_to_eur": 0.92}, ...]
  RATES_API_TOKEN   optional secret, sent as `Authorization: Bearer`; never written anywhere
Exit codes: 0 handed over, 2 bad configuration, 3 the previous run is not picked up yet, 1 fetch failed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import duckdb

# The frozen extract contract (contract_tests/spec/meta.sql in the Agnes repository).
META_DDL = """
CREATE TABLE _meta (
  table_name   VARCHAR NOT NULL,
  description  VARCHAR,
  rows         BIGINT,
  size_bytes   BIGINT,
  extracted_at TIMESTAMP,
  query_mode   VARCHAR DEFAULT 'local'
)"""


def fail(code: int, message: str) -> int:
    print(f"exchange_rates: {message}", file=sys.stderr)
    return code


def fetch(url: str, token: str | None, dest: Path) -> None:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - http(s) checked
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310 - http(s) checked in main()
        records = json.load(resp)
    if not isinstance(records, list):
        raise ValueError(f"{url} answered {type(records).__name__}, expected a JSON list of records")
    dest.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")


def build_extract(records: Path, out: Path, extracted_at: datetime) -> int:
    """Write extract.duckdb + data/rates.parquet into `out`; returns the row count."""
    (out / "data").mkdir(parents=True)
    parquet = out / "data" / "rates.parquet"
    con = duckdb.connect(str(out / "extract.duckdb"))
    try:
        con.execute(META_DDL)
        rel = con.sql(
            "SELECT day, upper(currency) AS currency, rate_to_eur FROM read_json(?, format='newline_delimited', "
            "columns={'day': 'DATE', 'currency': 'VARCHAR', 'rate_to_eur': 'DOUBLE'}) ORDER BY day, currency",
            params=[str(records)])
        rel.write_parquet(str(parquet), compression="zstd")
        rows = con.execute("SELECT count(*) FROM read_parquet(?)", [str(parquet)]).fetchone()[0]
        con.execute("INSERT INTO _meta VALUES ('rates', 'Daily exchange rates to EUR', ?, ?, ?, 'local')",
                    [rows, parquet.stat().st_size, extracted_at.replace(tzinfo=None)])
        con.execute("CHECKPOINT")
    finally:
        con.close()  # closed cleanly: no extract.duckdb.wal is handed over
    return rows


def hand_over(staging: Path, inbox: Path) -> None:
    """Replace the inbox contents with the new run, then create READY last."""
    for old in inbox.iterdir():
        if old.name == "REJECTED":
            continue  # Agnes removes it when it takes the next run
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    for entry in staging.iterdir():
        os.replace(entry, inbox / entry.name)
    (inbox / "READY").touch()


def main() -> int:
    inbox_env, url = os.environ.get("AGNES_INBOX"), os.environ.get("RATES_API_URL")
    if not inbox_env or not url:
        return fail(2, "set AGNES_INBOX (e.g. /data/inbox/exchange_rates) and RATES_API_URL")
    if urlsplit(url).scheme not in ("http", "https"):
        return fail(2, f"RATES_API_URL must be an http(s) URL, got {url!r}")
    inbox = Path(inbox_env)
    inbox.mkdir(parents=True, exist_ok=True)
    if (inbox / "READY").exists():
        return fail(3, f"{inbox}/READY exists: Agnes has not taken the previous run yet; try again later")
    extracted_at = datetime.now(UTC)
    # Build next to the inbox folder (same volume, so the hand-over is a rename), never inside it.
    with tempfile.TemporaryDirectory(prefix=f".{inbox.name}-", dir=inbox.parent) as tmp:
        work = Path(tmp)
        try:
            fetch(url, os.environ.get("RATES_API_TOKEN"), work / "records.jsonl")
        except (OSError, ValueError) as e:
            return fail(1, f"fetching {url} failed: {e}")
        staging = work / "run"
        staging.mkdir()
        rows = build_extract(work / "records.jsonl", staging, extracted_at)
        hand_over(staging, inbox)
    print(f"exchange_rates: handed over {rows} rows to {inbox} (READY created)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
