"""Sample connector: deterministic demo data (customers, products, orders).

The shortest complete connector - read it first when writing your own.
Needs no options and no secrets; the data comes from agnes.extract.sample_data.
"""

from agnes.extract import ExtractWriter, emit, read_context
from agnes.extract.sample_data import DESCRIPTIONS, generate


def main() -> None:
    ctx = read_context()
    unknown = sorted(set(ctx.tables) - set(DESCRIPTIONS))
    for name in unknown:
        emit("table_failed", table=name, error=f"no such sample table; available: {', '.join(DESCRIPTIONS)}")
    with ExtractWriter(ctx.output_dir) as w:
        for name, table in generate().items():
            if not ctx.wants(name):
                continue
            emit("table_started", table=name)
            info = w.add_arrow(name, table, description=DESCRIPTIONS[name])
            emit("table_done", table=name, rows=info.rows, bytes=info.size_bytes)


if __name__ == "__main__":
    main()
