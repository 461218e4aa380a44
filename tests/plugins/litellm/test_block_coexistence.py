"""A blocked call is never begun for LiteLLM's own callbacks (a Langfuse or Helicone logger): our check runs
before LiteLLM's logging starts a call, so a logger hears of the calls that were sent and of nothing else; no
call is left with a pre-API log and no end."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger

import agentwatch
from agentwatch import CircuitBreakerException

from .test_blocking import BUDGET, EXPENSIVE, _call, _router


class Recorder(CustomLogger):
    """The call ids LiteLLM logged a pre-API call for."""

    def __init__(self) -> None:
        super().__init__()
        self.begun: list[str] = []
        self.lock = threading.Lock()

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: dict[str, Any]) -> None:
        with self.lock:
            self.begun.append(str(kwargs.get("litellm_call_id")))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    logger = Recorder()
    saved = list(litellm.callbacks)
    litellm.callbacks = [*saved, logger]
    yield logger
    litellm.callbacks = saved


@pytest.mark.parametrize("how", ["completion", "acompletion", "stream", "router", "arouter"])
def test_a_blocked_call_is_never_begun_for_litellms_loggers(stub_provider: Any, memory: Any, how: str,
                                                             recorder: Recorder) -> None:
    agentwatch.init(exporters=[memory])
    router = _router(stub_provider)
    stub_provider.queue(EXPENSIVE)
    with agentwatch.agent("researcher", budget_per_hour=BUDGET, block_on_threshold=True):
        _call(how, stub_provider, router)
        assert len(recorder.begun) == 1  # the logger hears of the call that is sent
        with pytest.raises(CircuitBreakerException):
            _call(how, stub_provider, router)
    assert stub_provider.count() == 1
    assert len(recorder.begun) == 1  # and of nothing for the blocked one
