from __future__ import annotations

import os
import subprocess
import sys

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


def test_agents_prices_and_providers_come_from_the_environment_as_json() -> None:
    """Found 2026-12-05: ``AGENTWATCH_AGENTS`` (and the other two) were ignored without a word; a deployment that
    set per-agent budgets that way had none. Run as a deployment does: a fresh interpreter, only the environment."""
    program = (
        "import agentwatch\n"
        "agentwatch.init(exporters=[])\n"
        "with agentwatch.agent('Writer'):\n"
        "    with agentwatch.llm_call('draft', model='house-model') as call:\n"
        "        call.set_usage(1000, 1000)\n"
        "    print(round(call.span.cost_usd, 6), call.span.provider)\n"
        "    try:\n"
        "        agentwatch.start_llm_call('again', model='house-model')\n"
        "    except agentwatch.CircuitBreakerException as error:\n"
        "        print(error.scope, error.scope_id, error.reason)\n"
    )
    environ = {**os.environ, "AGENTWATCH_BLOCK_ON_THRESHOLD": "1",
               "AGENTWATCH_AGENTS": '{"Writer": {"budget_per_hour": 0.002}}',
               "AGENTWATCH_COST_TABLE_OVERRIDE": '{"house-model": {"input": 1.0, "output": 2.0}}',
               "AGENTWATCH_PROVIDERS": '{"http://models.internal/v1": "house"}'}
    done = subprocess.run([sys.executable, "-c", program], env=environ, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["0.003 None", "agent writer budget_per_hour"]
    config = build_config({}, environ={"AGENTWATCH_PROVIDERS": '{"http://models.internal/v1": "house"}'})
    assert dict(config.providers) == {"http://models.internal/v1": "house"}


@pytest.mark.parametrize(("raw", "error"), [("{not json", ValueError), ("[1, 2]", TypeError)])
def test_an_environment_value_that_is_no_json_object_is_reported(raw: str, error: type[Exception]) -> None:
    with pytest.raises(error, match="AGENTWATCH_AGENTS|agents"):
        build_config({}, environ={"AGENTWATCH_AGENTS": raw})


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
