"""AgentWatch reads AutoGen's events without changing what the application's logging configuration delivers."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from autogen_core import EVENT_LOGGER_NAME
from autogen_core.models import UserMessage

import agentwatch
from tests.stubs.provider_server import Reply

from .conftest import spans

HELLO = [UserMessage(content="hello", source="user")]
Seen = list[tuple[str, int, str]]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.seen: Seen = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.name, record.levelno, type(record.msg).__name__))


@pytest.fixture
def event_logger() -> Iterator[logging.Logger]:
    """The event logger, put back exactly as it was after the test."""
    logger = logging.getLogger(EVENT_LOGGER_NAME)
    before = (logger.level, list(logger.handlers), list(logger.filters), logger.propagate)
    yield logger
    logger.setLevel(before[0])
    logger.handlers[:] = before[1]
    logger.filters[:] = before[2]
    logger.propagate = before[3]


async def _scenario(stub: Any, model_client: Any, configure: Callable[[], None], when: str,
                    start: Callable[[], None]) -> tuple[Seen, Seen, tuple[int, int, bool, bool]]:
    """Configure the app's logging before or after ``start``; call the model (plain and streamed) and log an
    app record; what the event logger's handler and the root's handler got, and the logger's own state."""
    logger = logging.getLogger(EVENT_LOGGER_NAME)
    own, root = _Collect(), _Collect()
    logger.addHandler(own)
    logging.getLogger().addHandler(root)
    try:
        if when == "before":
            configure()
        start()
        if when == "after":
            configure()
        stub.queue(Reply(content="one", input_tokens=30, output_tokens=4))
        await model_client.create(HELLO)
        stub.queue(Reply(content="two", input_tokens=30, output_tokens=4))
        async for _ in model_client.create_stream(HELLO):
            pass
        logger.info("the application's own record")
        logger.debug("the application's own debug record")
        child = logging.getLogger(EVENT_LOGGER_NAME + ".child")
        state = (logger.level, logger.getEffectiveLevel(), logger.isEnabledFor(logging.INFO),
                 child.isEnabledFor(logging.INFO))
    finally:
        logger.removeHandler(own)
        logging.getLogger().removeHandler(root)
    root_events = [entry for entry in root.seen if entry[0] == EVENT_LOGGER_NAME]
    return own.seen, root_events, state


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("level", [None, logging.DEBUG, logging.INFO, logging.WARNING])
async def test_the_applications_level_and_handlers_get_exactly_what_they_get_without_agentwatch(
        memory, stub_provider, model_client, event_logger, level, when):
    def configure() -> None:
        if level is not None:
            event_logger.setLevel(level)

    plain = await _scenario(stub_provider, model_client, configure, when, lambda: None)
    event_logger.setLevel(logging.NOTSET)  # as the fixture found it, for the second run
    watched = await _scenario(stub_provider, model_client, configure, when,
                              # the stub stands in for OpenAI's API, whose streams the core asks for usage
                              lambda: agentwatch.init(exporters=[memory],
                                                      stream_usage=[stub_provider.openai_base_url]) and None)

    assert watched == plain
    if level is not None and level <= logging.INFO:  # the run can fail: the events reach the app's handler
        assert ("LLMCallEvent" in [kind for _, _, kind in plain[0]]
                and (EVENT_LOGGER_NAME, logging.INFO, "str") in plain[0])
    # and AgentWatch saw the events whatever the app's level: the provider's usage of both calls
    assert [(call["input_tokens"], call["output_tokens"]) for call in spans(memory, "llm")] == [(30, 4), (30, 4)]


def test_handler_and_info_level_set_after_init_in_a_fresh_program_receive_the_apps_records():
    # The reported program: init() first, then autogen_core is imported and the app turns its events on.
    program = textwrap.dedent("""
        import logging, agentwatch
        agentwatch.init(exporters=[])
        from autogen_core import EVENT_LOGGER_NAME
        got = []
        class Keep(logging.Handler):
            def emit(self, record): got.append(record.getMessage())
        logger = logging.getLogger(EVENT_LOGGER_NAME)
        logger.addHandler(Keep())
        logger.info("before setLevel")
        logger.setLevel(logging.INFO)
        logger.info("after setLevel")
        logger.setLevel(logging.NOTSET)
        logger.info("after NOTSET")
        print(got, logger.level, logger.getEffectiveLevel(), logger.filters)
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['after setLevel'] 0 30 []"
