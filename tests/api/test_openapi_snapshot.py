"""The committed OpenAPI snapshot must equal the live schema.

The breaking-change gate compares the base branch's snapshot with a PR's
live schema; a stale snapshot would hide a change. Regenerate with
`make openapi-snapshot` after an intended API change.
"""

import json

from agnes.api.openapi_snapshot import SNAPSHOT, live_schema, main, render


def test_snapshot_matches_live_schema():
    assert SNAPSHOT.exists(), "run `make openapi-snapshot`"
    committed = json.loads(SNAPSHOT.read_text())
    live = live_schema()
    assert committed == live, "OpenAPI changed: run `make openapi-snapshot`, review the diff, commit it"
    assert SNAPSHOT.read_text() == render(live)  # normalized form, byte for byte


def test_snapshot_is_deterministic():
    assert render(live_schema()) == render(live_schema())


def test_checker_reports_staleness(tmp_path, monkeypatch, capsys):
    import agnes.api.openapi_snapshot as mod

    stale = tmp_path / "openapi.json"
    stale.write_text("{}\n")
    monkeypatch.setattr(mod, "SNAPSHOT", stale)
    assert main([]) == 1
    assert "make openapi-snapshot" in capsys.readouterr().err
    assert main(["--write"]) == 0 and main([]) == 0


def test_every_operation_has_a_stable_id_and_documents_errors():
    schema = live_schema()
    for path, item in schema["paths"].items():
        for method, op in item.items():
            assert op.get("operationId") and op["operationId"][0].islower(), (method, path)
            errors = [code for code in op["responses"] if code.startswith(("4", "5"))]
            if op.get("security") != [{}]:
                assert "401" in errors and "403" in errors, (method, path)
