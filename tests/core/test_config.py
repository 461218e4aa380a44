from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

import agentwatch
from agentwatch._config import DEFAULT_PROXY_URL, Config, build_config

#: The environment variable of every parameter that has a text form (the callables have none).
ENV_VARIABLES = sorted("AGENTWATCH_URL" if field.name == "proxy_url" else f"AGENTWATCH_{field.name.upper()}"
                       for field in dataclasses.fields(Config) if field.init and field.name not in ("on_alert",
                                                                                                    "on_block"))


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
        # Found 2026-12-05: these said "'int' object is not iterable", or were taken without a word.
        ({"agents": {"Writer": 1}}, TypeError, r"agents\['Writer'\] must be a dict of limits"),
        ({"agents": {1: {}}}, TypeError, "agents: an agent's name must be a str"),
        ({"disabled_plugins": 5}, TypeError, "disabled_plugins"),
        ({"disabled_plugins": [1]}, TypeError, "disabled_plugins"),
        ({"cost_table_override": []}, TypeError, "cost_table_override"),
        ({"providers": {"my-vllm:8000": "openai"}}, ValueError, "providers: 'my-vllm:8000' is not an http"),
        ({"spool_dir": b"/tmp"}, TypeError, "spool_dir"),
        ({"exporters": ["jsonl:/no/such/dir/spans.jsonl"]}, ValueError, "exporters: .*'/no/such/dir' does not exist"),
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


def test_a_bad_environment_value_names_its_variable() -> None:
    with pytest.raises(TypeError, match=r"AGENTWATCH_AGENTS: agents\['Writer'\] must be a dict of limits"):
        build_config({}, environ={"AGENTWATCH_AGENTS": '{"Writer": 1}'})


@pytest.mark.parametrize("name", [name for name in ENV_VARIABLES if name != "AGENTWATCH_SPOOL_DIR"])
@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_variable_is_an_unset_one(name: str, empty: str) -> None:
    """Found 2026-12-05: AGENTWATCH_HARD_BUDGET= meant False, AGENTWATCH_BUDGET_PER_HOUR= and AGENTWATCH_URL= raised,
    AGENTWATCH_EXPORTERS= meant no exporter at all (and AGENTWATCH_ENABLED= switched AgentWatch off)."""
    assert build_config({}, environ={name: empty}) == build_config({}, environ={})


def test_an_empty_kill_switch_is_said_to_leave_agentwatch_on(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="agentwatch"):
        assert build_config({}, environ={"AGENTWATCH_ENABLED": " "}).enabled
    assert "AGENTWATCH_ENABLED is set but empty" in caplog.text


def test_no_exporter_is_said_with_none() -> None:
    assert build_config({}, environ={"AGENTWATCH_EXPORTERS": " None "}).exporters == ()


def test_an_empty_spool_dir_variable_turns_the_spool_off() -> None:
    assert build_config({}, environ={"AGENTWATCH_SPOOL_DIR": ""}).spool_dir == ""


def test_paths_and_numbers_of_other_types_are_taken() -> None:
    """Found 2026-12-05: a pathlib.Path spool_dir and numpy's integers were refused."""
    import numpy  # installed with the frameworks (LlamaIndex, CrewAI)
    config = build_config({"spool_dir": Path("/tmp/spool"), "disabled_plugins": None,
                           "max_calls_per_minute": numpy.int64(3), "budget_per_hour": numpy.float32(1.5),
                           "agents": {"Writer": {"max_calls_per_minute": numpy.int32(2)}}}, environ={})
    assert config.spool_dir == "/tmp/spool"
    assert config.disabled_plugins == frozenset()
    assert (config.max_calls_per_minute, type(config.max_calls_per_minute)) == (3, int)
    assert config.budget_per_hour == 1.5
    assert type(config.agents["Writer"]["max_calls_per_minute"]) is int


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
