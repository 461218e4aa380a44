"""Real LiteLLM against the loopback stub provider (``openai/<model>`` and ``anthropic/<model>``).

LiteLLM fetches its model cost map from the internet at import unless told to use its bundled copy, and
may send telemetry: both are switched off before it is imported, and every test fails if a socket is
opened to anything but loopback.
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("LITELLM_TELEMETRY", "False")

import socket  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import litellm  # noqa: E402
import pytest  # noqa: E402

litellm.telemetry = False

OPENAI = "openai/gpt-4o-mini"
ANTHROPIC = "anthropic/claude-3-5-sonnet-20240620"
MESSAGES = [{"role": "user", "content": "hi"}]


def loopback_only(address: Any) -> None:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith("127.") or host in ("::1", "localhost")):
        raise AssertionError(f"a connection left loopback: {address!r}")


@pytest.fixture(autouse=True)
def _nothing_leaves_loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            loopback_only(address)
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield


def openai_kwargs(stub: Any, **extra: Any) -> dict[str, Any]:
    return {"model": OPENAI, "messages": MESSAGES, "api_base": stub.openai_base_url, "api_key": "test-key", **extra}


def anthropic_kwargs(stub: Any, **extra: Any) -> dict[str, Any]:
    return {"model": ANTHROPIC, "messages": MESSAGES, "api_base": stub.base_url, "api_key": "test-key", **extra}


def llm_spans(memory: Any) -> list[dict[str, Any]]:
    return [span for span in memory.spans if span["kind"] in ("llm", "embedding")]
