"""One place picks the store: an app built from the environment runs on the store AGENTWATCH_STORE names, and
ClickHouse data expires once, by the retention job's purge (no table TTL beside it)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agentwatch.server import Settings, create_app
from agentwatch.server._app import app_from_env
from agentwatch.server._stats import DAY_NS
from tests.server.aw_helpers import SpanFactory, make_trace


def test_app_from_env_runs_on_the_store_agentwatch_store_names(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, signing_key: Path, chdb_dir: Path,
        make_span: SpanFactory) -> None:
    database = f"t_{uuid.uuid4().hex}"
    sqlite_file = tmp_path / "unused.db"
    monkeypatch.setenv("AGENTWATCH_STORE", f"chdb://{chdb_dir}?database={database}")
    monkeypatch.setenv("AGENTWATCH_DB", str(sqlite_file))
    monkeypatch.setenv("AGENTWATCH_SIGNING_KEY", str(signing_key))
    spans = make_trace(make_span)
    with TestClient(app_from_env(), base_url="http://localhost") as client:
        store = client.app.state.agentwatch.store  # type: ignore[attr-defined]
        try:
            assert client.get("/health").json()["storage"] == "ClickHouseStore"
            assert client.post("/api/ingest", content=json.dumps(spans)).status_code == 202
            assert client.get("/api/traces").json()["total"] == 1
            # The spans are in that ClickHouse database, read back without the app.
            rows = store._rows(f"SELECT count() FROM {database}.spans")
            assert rows[0][0] == len(spans)
        finally:
            store.drop_database()
    assert not sqlite_file.exists()


def test_clickhouse_retention_is_the_purge_alone(tmp_path: Path, signing_key: Path, chdb_dir: Path,
                                                 make_span: SpanFactory) -> None:
    from agentwatch.server._clickhouse import ClickHouseStore
    from agentwatch.server._ingest import parse_spans

    url = f"chdb://{chdb_dir}?database=t_{uuid.uuid4().hex}"
    store = ClickHouseStore(url)
    try:
        # A database an earlier version made with a TTL loses it on open.
        store._execute(f"ALTER TABLE {store.database}.spans MODIFY TTL toDateTime(intDiv(start_ns, 1000000000))"
                       " + INTERVAL 7 DAY SETTINGS materialize_ttl_after_modify = 0")
        store.close()
        store = ClickHouseStore(url)
        for table in ("spans", "breaker_events", "alert_history"):
            assert "TTL" not in store._rows(f"SHOW CREATE TABLE {store.database}.{table}")[0][0]
        now = time.time_ns()
        old = make_trace(make_span, start=now - 40 * DAY_NS, agent="ancient")
        new = make_trace(make_span, start=now - 2 * DAY_NS)
        store.ingest(parse_spans(json.dumps(old + new).encode(), 100).records)
        settings = Settings(db_path=tmp_path / "unused.db", signing_key_path=signing_key, data_retention_days=30,
                            store_url=url)
        with TestClient(create_app(store=store, settings=settings), base_url="http://localhost") as client:
            assert client.get("/api/traces").json()["total"] == 1
            assert client.get("/api/traces", params={"agent_id": "ancient"}).json()["total"] == 0
            assert client.get(f"/api/traces/{old[0]['trace_id']}/spans").status_code == 404
    finally:
        store.drop_database()
        store.close()
