"""Sources declared in config/instance.yaml are applied at start (and the export reads back)."""

from __future__ import annotations

import pytest
import yaml
from litestar.testing import AsyncTestClient

from agnes.app import create_app
from agnes.errors import StartupError
from agnes.services.instance import start_instance
from tests.api.source_helpers import audit_rows
from tests.conftest import bootstrap

PROVISIONING = """\
instance:
  name: Provisioned
sources:
  - data_source: sample
    visible_to_all: true
  - data_source: csv
    name: sales
    schedule: "0 4 * * *"
  - data_source: custom
    connector: my_api
    options:
      base_url: ${BASE_URL}
    secrets:
      MY_API_KEY: ${PROV_API_KEY}
"""


@pytest.fixture
def start(make_settings, custom_dir, data_dir):
    """Start the full app on the data dir (with the provisioning file as it is now)."""
    def make():
        return create_app(make_settings(AGNES_CUSTOM_CONNECTORS_DIR=str(custom_dir)))
    return make


def write_file(data_dir, text):
    (data_dir / "config").mkdir(exist_ok=True)
    (data_dir / "config" / "instance.yaml").write_text(text)


async def sources_of(app):
    async with app.state.instance.control.read() as conn:
        async with conn.execute("SELECT name, type, schedule, visible_to_all, origin, options FROM sources "
                                "ORDER BY name") as cur:
            return [tuple(r) for r in await cur.fetchall()]


async def secret_of(app, source, key):
    async with app.state.instance.control.read() as conn:
        async with conn.execute("SELECT ciphertext, env_ref FROM source_secrets WHERE source = ? AND key = ?",
                                (source, key)) as cur:
            row = await cur.fetchone()
    return app.state.instance.encryptor.decrypt(row[0]), row[1]


async def test_declared_sources_are_applied_idempotently(start, data_dir, monkeypatch):
    monkeypatch.setenv("PROV_API_KEY", "prov-secret-value-123456")
    monkeypatch.setenv("BASE_URL", "https://api.example.com")
    write_file(data_dir, PROVISIONING)
    app = start()
    async with AsyncTestClient(app=app):
        assert await sources_of(app) == [
            ("my_api", "custom", None, 0, "provisioning",
             '{"connector":"my_api","options":{"base_url":"https://api.example.com"}}'),
            ("sales", "csv", "0 4 * * *", 0, "provisioning", "{}"),
            ("sample", "sample", None, 1, "provisioning", "{}"),
        ]
        assert await secret_of(app, "my_api", "MY_API_KEY") == ("prov-secret-value-123456", "PROV_API_KEY")
        assert [a for a, _ in await audit_rows(app)] == ["source_created"] * 3
    # The file is now the export: settings kept, secret as the same ${REF}, the value nowhere.
    text = (data_dir / "config" / "instance.yaml").read_text()
    assert "prov-secret-value" not in text
    exported = yaml.safe_load(text)
    assert exported["instance"] == {"name": "Provisioned"}
    assert exported["sources"][0]["secrets"] == {"MY_API_KEY": "${PROV_API_KEY}"}
    app = start()  # restart on the same file: nothing changes
    async with AsyncTestClient(app=app):
        assert len(await audit_rows(app)) == 3
    monkeypatch.setenv("PROV_API_KEY", "rotated-secret-value-987654")
    app = start()  # a rotated variable is picked up at the next start
    async with AsyncTestClient(app=app):
        assert (await secret_of(app, "my_api", "MY_API_KEY"))[0] == "rotated-secret-value-987654"
        actions = await audit_rows(app)
        assert actions[-1][0] == "source_updated" and "MY_API_KEY" in actions[-1][1]
        assert "rotated" not in str(actions)


async def test_declared_keys_win_over_api_edits_at_start_others_are_kept(data_dir, tmp_path):
    provisioning = tmp_path / "provisioning.yaml"  # a separate file: AGNES_CONFIG
    provisioning.write_text("sources:\n  - data_source: csv\n    name: sales\n    schedule: '0 4 * * *'\n")

    def make():
        from agnes.settings import Settings
        return create_app(Settings.load({"DATA_DIR": str(data_dir), "AGNES_CONFIG": str(provisioning)}))

    app = make()
    async with AsyncTestClient(app=app) as client:
        h = {"Authorization": f"Bearer {await bootstrap(client, data_dir)}"}
        resp = await client.patch("/api/admin/sources/sales", json={"schedule": "0 5 * * *", "visible_to_all": True},
                                  headers=h)
        assert resp.status_code == 200
    assert "0 5 * * *" in (data_dir / "config" / "instance.yaml").read_text()  # the export, not the provisioning file
    app = make()
    async with AsyncTestClient(app=app):
        assert await sources_of(app) == [("sales", "csv", "0 4 * * *", 1, "provisioning", "{}")]


async def test_export_of_api_secrets_reads_back_without_the_variables(start, data_dir):
    app = start()
    async with AsyncTestClient(app=app) as client:
        h = {"Authorization": f"Bearer {await bootstrap(client, data_dir)}"}
        resp = await client.post("/api/admin/configure", headers=h, json={
            "data_source": "custom", "connector": "my_api", "secrets": {"MY_API_KEY": "typed-into-the-api-123456"}})
        assert resp.status_code == 200, resp.text
    assert "${MY_API_KEY}" in (data_dir / "config" / "instance.yaml").read_text()
    app = start()  # MY_API_KEY is not set in the environment: the stored secret is kept
    async with AsyncTestClient(app=app):
        assert (await secret_of(app, "my_api", "MY_API_KEY"))[0] == "typed-into-the-api-123456"
        assert [a for a, _ in await audit_rows(app)] == ["source_created"]


@pytest.mark.parametrize(("text", "expected"), [
    ("sources:\n  - data_source: custom\n    connector: my_api\n    secrets:\n      MY_API_KEY: ${NOT_SET_ANYWHERE}\n",
     ["line 2", "NOT_SET_ANYWHERE", "is not set"]),
    ("sources:\n  - data_source: custom\n    connector: my_api\n    secrets:\n      MY_API_KEY: literal-value\n",
     ["line 2", "MY_API_KEY", "${ENV_NAME} reference"]),
    ("sources:\n  - data_source: custom\n    connector: my_api\n    options:\n      url: ${NOT_SET_ANYWHERE}\n",
     ["line 2", "options", "NOT_SET_ANYWHERE"]),
    ("sources:\n  - data_source: csv\n    name: Bad Name\n", ["line 2", "Bad Name"]),
    ("sources:\n  - data_source: csv\n    colour: red\n", ["line 2", "colour"]),
    ("sources:\n  - data_source: sample\n  - data_source: sample\n", ["line 3", "declared twice", "line 2"]),
])
async def test_bad_declarations_stop_the_start(make_settings, custom_dir, data_dir, text, expected):
    write_file(data_dir, text)
    settings = make_settings(AGNES_CUSTOM_CONNECTORS_DIR=str(custom_dir))
    with pytest.raises(StartupError) as caught:
        await start_instance(settings)
    assert caught.value.code == "config_invalid"
    for part in expected:
        assert part in str(caught.value), str(caught.value)


async def test_unknown_types_warn_and_checks_do_not_block(start, data_dir):
    write_file(data_dir, "sources:\n  - data_source: bigquery\n    bigquery_token: ${BQ}\n"
                         "  - data_source: custom\n    connector: not_mounted_yet\n")
    app = start()
    async with AsyncTestClient(app=app) as client:
        warnings = (await client.get("/api/health")).json()["warnings"]
        assert any("line 2" in w and "bigquery" in w and "not supported" in w for w in warnings), warnings
        assert any("line 4" in w and "not_mounted_yet" in w for w in warnings), warnings
        assert [r[0] for r in await sources_of(app)] == ["not_mounted_yet"]
