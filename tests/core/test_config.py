from __future__ import annotations

import pytest

import agentwatch
from agentwatch._config import DEFAULT_PROXY_URL, build_config


def test_defaults() -> None:
    config = build_config({}, environ={})
    assert config.proxy_url == DEFAULT_PROXY_URL == "http://localhost:3001/api/ingest"
    assert config.max_queue_size == 10_000
    assert config.auto_instrument is True
    assert config.enabled is True
    assert config.capture_text is False


def test_arguments_win_over_environment() -> None:
    environ = {"AGENTWATCH_URL": "http://collector:9000/api/ingest", "AGENTWATCH_BUDGET_PER_HOUR": "3.5",
               "AGENTWATCH_BLOCK_ON_THRESHOLD": "true", "AGENTWATCH_MAX_CALLS_PER_MINUTE": "7",
               "AGENTWATCH_EXPORTERS": "console, jsonl", "AGENTWATCH_DISABLED_PLUGINS": "crewai,autogen"}
    config = build_config({"budget_per_hour": 9.0}, environ=environ)
    assert config.proxy_url == "http://collector:9000/api/ingest"
    assert config.budget_per_hour == 9.0
    assert config.block_on_threshold is True
    assert config.max_calls_per_minute == 7
    assert config.exporters == ("console", "jsonl")
    assert config.disabled_plugins == frozenset({"crewai", "autogen"})


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"budget_per_hour": -1}, ValueError, "budget_per_hour"),
        ({"max_error_rate": 1.5}, ValueError, "max_error_rate"),
        ({"max_calls_per_minute": 2.5}, TypeError, "max_calls_per_minute"),
        ({"block_on_threshold": "yes"}, TypeError, "block_on_threshold"),
        ({"max_queue_size": 0}, ValueError, "max_queue_size"),
        ({"flush_interval": -0.1}, ValueError, "flush_interval"),
        ({"proxy_url": "ftp://x"}, ValueError, "proxy_url"),
        ({"on_alert": 3}, TypeError, "on_alert"),
        ({"budget_per_houre": 1.0}, TypeError, "budget_per_houre"),
        ({"cost_table_override": {"m": {"input": 1.0}}}, ValueError, "cost_table_override"),
        ({"agents": {"A": {"budget_per_hour": -2}}}, ValueError, "budget_per_hour"),
        ({"exporters": "http"}, TypeError, "exporters"),
    ],
)
def test_bad_input_names_the_parameter(kwargs: dict, error: type[Exception], names: str) -> None:
    with pytest.raises(error, match=names):
        agentwatch.init(**kwargs)
    assert agentwatch.get_client() is None


def test_bad_environment_value_is_reported() -> None:
    with pytest.raises(ValueError, match="AGENTWATCH_BUDGET_PER_HOUR"):
        build_config({}, environ={"AGENTWATCH_BUDGET_PER_HOUR": "lots"})


def test_init_is_idempotent_and_restartable(memory: agentwatch.InMemoryExporter) -> None:
    first = agentwatch.init(exporters=[memory])
    assert agentwatch.init() is first
    agentwatch.shutdown()
    assert agentwatch.get_client() is None
    second = agentwatch.init(exporters=[memory])
    assert second is not first
    assert agentwatch.get_state()["initialized"] is True


def test_kill_switch_records_nothing(memory: agentwatch.InMemoryExporter) -> None:
    client = agentwatch.init(enabled=False, exporters=[memory], budget_per_hour=0.0, block_on_threshold=True)
    assert client.enabled is False
    assert agentwatch.get_client() is None
    with agentwatch.trace("t"), agentwatch.llm_call(model="gpt-4o") as call:
        call.set_usage(10, 10)
    agentwatch.flush()
    assert memory.spans == []
