"""AgentWatch reads AG2's completion reports without changing what the application's runtime log gets."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from autogen import runtime_logging

import agentwatch
from tests.stubs.provider_server import Reply

from .test_ag2 import spans, tool_then_answer


@pytest.fixture(autouse=True)
def _runtime_log_off() -> Iterator[None]:
    yield
    if runtime_logging.logging_enabled():
        runtime_logging.stop()
    runtime_logging.autogen_logger = None


def _log_records(log_file: Path) -> list[tuple[str, Any]]:
    """What the application's file runtime log holds: each record's kind and content, without ids/times."""
    records = []
    for line in log_file.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # the logger's own notes ("Started new session with Session ID: ...")
            records.append(("text", line.split(":")[0]))
            continue
        if "response" in entry:  # a chat completion
            # the response as AG2 logs it (its text carries run-specific ids): which call, and its cost
            records.append(("completion", (entry["is_cached"], entry["cost"] > 0, "The sum is 5." in str(entry))))
        else:
            records.append(("other", entry.get("event_name") or entry.get("agent_name") or entry.get("class")))
    return records


def _chat(pair_factory: Callable[[], tuple[Any, Any]], stub: Any, app_log: Path | None, when: str,
          start: Callable[[], None]) -> tuple[list[tuple[str, Any]], bool]:
    """Build the agents and chat, with the app's runtime log started before or after ``start``; the log's
    records and whether AG2 reports logging enabled to the application."""
    def app_starts_logging() -> None:
        if app_log is not None:
            runtime_logging.start(logger_type="file", config={"filename": str(app_log)})

    if when == "before":
        app_starts_logging()
    start()
    if when == "after":
        app_starts_logging()
    assistant, user = pair_factory()
    tool_then_answer(stub)
    user.initiate_chat(assistant, message="What is 2 + 3?", max_turns=2, silent=True)
    enabled = runtime_logging.logging_enabled()
    if app_log is not None:
        runtime_logging.stop()
    return (_log_records(app_log) if app_log is not None else []), enabled


@pytest.mark.parametrize("when", ["before", "after"])
def test_the_applications_runtime_log_gets_exactly_what_it_gets_without_agentwatch(
        memory, stub_provider, llm_config, tmp_path, when):
    from .conftest import add

    def make_pair() -> tuple[Any, Any]:
        from autogen import ConversableAgent

        assistant = ConversableAgent("assistant", llm_config=llm_config, human_input_mode="NEVER")
        user = ConversableAgent("user", llm_config=False, human_input_mode="NEVER")
        assistant.register_for_llm(name="add", description="Add two integers.")(add)
        user.register_for_execution(name="add")(add)
        return assistant, user

    plain = _chat(make_pair, stub_provider, tmp_path / "plain.log", when, lambda: None)
    watched = _chat(make_pair, stub_provider, tmp_path / "watched.log", when,
                    lambda: agentwatch.init(exporters=[memory]) and None)

    assert watched == plain
    assert [kind for kind, _ in plain[0]].count("completion") == 2  # the run can fail: the log got both
    # and AgentWatch read AG2's own report of both completions
    assert [span["attributes"].get("ag2.cost_usd", 0) > 0 for span in spans(memory, "llm")] == [True, True]


def test_without_an_application_runtime_log_none_is_started_and_reports_are_still_read(
        memory, stub_provider, pair):
    agentwatch.init(exporters=[memory])
    assistant, user = pair
    stub_provider.queue(Reply(content="The sum is 5.", input_tokens=190, output_tokens=7, cached_tokens=64))

    user.initiate_chat(assistant, message="What is 2 + 3?", max_turns=1, silent=True)

    assert not runtime_logging.logging_enabled()
    assert runtime_logging.autogen_logger is None
    [call] = spans(memory, "llm")
    assert call["cached_input_tokens"] == 64 and call["attributes"]["ag2.cost_usd"] > 0
