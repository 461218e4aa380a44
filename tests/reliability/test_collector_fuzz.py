"""Schema-driven fuzzing of the collector (schemathesis, in-process against the ASGI app): no 5xx on any
route, and the data stored before the fuzzing is still there, unchanged, afterwards."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentwatch.server import ServerHandle, Settings, start_background  # noqa: E402
from tests.reliability.conftest import scale  # noqa: E402

EXAMPLES = scale(15, 300)

# /api/reports/verify takes a raw PDF: arbitrary bytes, some of them starting like a PDF.
schemathesis.openapi.media_type("application/pdf", st.one_of(st.binary(max_size=4096),
                                                             st.binary(max_size=4096).map(lambda b: b"%PDF-1.7\n" + b)))
_SEED_COUNT = 20


def _seed_spans() -> list[dict[str, Any]]:
    now = time.time_ns()
    trace = uuid.uuid4().hex
    return [{"trace_id": trace, "span_id": f"{i:016x}", "parent_span_id": None if i == 0 else f"{0:016x}",
             "name": f"seed-{i}", "kind": "llm" if i else "trace", "status": "ok", "start_time_unix_nano": now + i,
             "end_time_unix_nano": now + i + 1000, "agent_id": None, "agent_name": None, "agent_role": None,
             "model": "gpt-4o", "provider": "openai", "input_tokens": i, "output_tokens": i, "cached_input_tokens": 0,
             "cost_usd": 0.001 * i, "attributes": {"n": i}} for i in range(_SEED_COUNT)]


_SEEDED = _seed_spans()


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    path: Path = tmp_path_factory.mktemp("fuzz")
    handle = start_background(settings=Settings(db_path=path / "fuzz.db", signing_key_path=path / "key.pem",
                                                alert_interval_seconds=3600, alert_min_interval_seconds=3600,
                                                max_body_bytes=256 * 1024), port=0)
    try:
        answer = httpx.post(handle.url + "/api/ingest", json=_SEEDED, timeout=10)
        assert answer.json()["accepted"] == _SEED_COUNT
        yield handle
    finally:
        handle.stop()


def _snapshot(handle: ServerHandle) -> list[dict[str, Any]]:
    answer = httpx.get(f"{handle.url}/api/traces/{_SEEDED[0]['trace_id']}/spans", timeout=10)
    assert answer.status_code == 200
    body = answer.json()
    spans = body if isinstance(body, list) else body.get("spans", body)
    return sorted(({k: s[k] for k in ("span_id", "name", "input_tokens", "cost_usd")} for s in spans),
                  key=lambda s: s["span_id"])


def _fuzz(server: ServerHandle, keep: Callable[[str], bool]) -> tuple[dict[str, int], list[str]]:
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    failures: list[str] = []
    tried: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/pdf") or not keep(operation.path):  # pdf: a 3072-bit RSA signature per call
            continue
        label = f"{operation.method.upper()} {operation.path}"

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            response = case.call(base_url=server.url, timeout=20)
            tried[label] = tried.get(label, 0) + 1  # noqa: B023 - run() is called in this iteration
            if response.status_code >= 500:
                failures.append(f"{label} -> {response.status_code}: {response.text[:200]}")  # noqa: B023

        run()
    return tried, failures


def test_ingest_and_trace_queries_never_5xx_and_stored_data_is_intact(fuzz_server: ServerHandle) -> None:
    before = _snapshot(fuzz_server)
    assert len(before) == _SEED_COUNT
    tried, failures = _fuzz(fuzz_server, lambda path: path == "/api/ingest" or path.startswith("/api/traces"))
    assert len(tried) >= 6, tried
    assert not failures, failures[:5]
    assert json.dumps(_snapshot(fuzz_server), sort_keys=True) == json.dumps(before, sort_keys=True)
    print(f"schemathesis: {sum(tried.values())} requests over {len(tried)} operations")


def test_every_other_route_never_answers_5xx(fuzz_server: ServerHandle) -> None:
    tried, failures = _fuzz(fuzz_server, lambda path: path != "/api/ingest" and not path.startswith("/api/traces"))
    assert len(tried) >= 10, tried
    assert not failures, failures[:5]
