"""Property-based fuzzing of the parsers that see untrusted input: configuration, usage numbers handed to
``LLMCall.set_usage``, and the HTTP plugin's SSE/JSON body reader and usage extraction. None of them may
raise anything but the documented ``ValueError``/``TypeError`` (config), and none may record nonsense."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import agentwatch
from agentwatch._config import build_config
from tests.reliability.conftest import scale

EXAMPLES = scale(300, 5_000)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
                     st.binary(max_size=10))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                       max_leaves=8)
_CONFIG_KEYS = ["api_key", "proxy_url", "zero_data_retention", "capture_messages", "budget_per_hour",
                "max_error_rate", "max_calls_per_minute", "block_on_threshold", "agent_name", "agents", "enabled",
                "debug", "flush_interval", "max_queue_size", "max_batch_size", "export_timeout", "auto_instrument",
                "exporters", "cost_table_override", "providers", "disabled_plugins", "no_such_option"]


@FUZZ
@given(kwargs=st.dictionaries(st.sampled_from(_CONFIG_KEYS), _values, max_size=4),
       environ=st.dictionaries(st.sampled_from([f"AGENTWATCH_{k.upper()}" for k in _CONFIG_KEYS] + ["AGENTWATCH_URL"]),
                               st.text(max_size=20), max_size=3))
def test_build_config_accepts_or_names_the_problem(kwargs: dict[str, Any], environ: dict[str, str]) -> None:
    try:
        config = build_config(kwargs, environ)
    except (ValueError, TypeError) as error:
        assert str(error), "an error must say what is wrong"
        return
    if config.budget_per_hour is not None:
        assert math.isfinite(config.budget_per_hour) and config.budget_per_hour >= 0
    assert config.max_queue_size > 0 and config.max_batch_size > 0 and config.flush_interval > 0


def test_set_usage_never_raises_and_never_records_garbage() -> None:
    memory = agentwatch.InMemoryExporter()
    agentwatch.init(exporters=[memory], flush_interval=3600)  # once: init/shutdown per example is slow

    @FUZZ
    @given(values=st.lists(_values, min_size=4, max_size=4))
    @example(values=[10**400, 10**400, 0, None])  # found by this test: raised OverflowError into the user's call
    @example(values=[-5, "12", float("inf"), float("nan")])
    def check(values: list[Any]) -> None:
        memory.clear()
        with agentwatch.llm_call(model="gpt-4o", provider="openai") as call:
            call.set_usage(*values)
        assert agentwatch.flush(5)
        (span,) = memory.by_kind("llm")
        for field in ("input_tokens", "output_tokens", "cached_input_tokens"):
            assert type(span[field]) is int and span[field] >= 0, (field, span[field])
        assert isinstance(span["cost_usd"], float) and math.isfinite(span["cost_usd"]) and span["cost_usd"] >= 0

    check()


from agentwatch.plugins.http import _body, _usage  # noqa: E402

_APIS = sorted(getattr(_usage, "_READERS", {"chat": None}))


def _events(draw_text: list[Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(item, default=str).encode() + b"\n\n" for item in draw_text)


@FUZZ
@given(api=st.sampled_from(_APIS), content_type=st.sampled_from(["text/event-stream", "application/json",
                                                                  "application/x-ndjson", None]),
       payload=st.one_of(st.binary(max_size=300), st.lists(_values, max_size=4).map(_events)),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_body_reader_survives_any_bytes_cut_anywhere(api: str, content_type: str | None, payload: bytes,
                                                     cuts: list[int]) -> None:
    reader = _body.BodyReader(api, content_type, capture_text=True)
    points = sorted({min(c, len(payload)) for c in cuts} | {0, len(payload)})
    for start, end in zip(points, points[1:], strict=False):
        reader.feed(payload[start:end])
    reading = reader.finish()
    usage = reading.usage()
    assert isinstance(usage, dict)


@FUZZ
@given(api=st.sampled_from(_APIS), data=_values)
def test_usage_extraction_ignores_unknown_shapes(api: str, data: Any) -> None:
    reading = _usage.Reading(api, capture_text=True)
    _usage.read_into(reading, data)
    assert isinstance(reading.usage(), dict)
