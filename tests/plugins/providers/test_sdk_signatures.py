"""The SDK and httpx wrappers pass the SDK's keywords on by name, for any signature the SDKs have had.

The wrappers declare ``stream``/``stream_cls`` (``request``) and ``stream`` (``send``) and forward them by name, which
CPython does without building a dict per call. That is only right for a method that takes them with those defaults
(``taking_keywords`` checks at patch time): the installed SDKs must get the direct path, and an older or another
signature (anthropic 0.40's positional ``remaining_retries``; a method without the keywords) must get every argument
exactly as without AgentWatch.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from agentwatch.plugins.http._patching import Patcher, taking_keywords
from agentwatch.plugins.http._sdk import install
from tests.plugins.providers.conftest import SpansOf


@pytest.mark.parametrize("owner", [openai._base_client.SyncAPIClient, openai._base_client.AsyncAPIClient,
                                   anthropic._base_client.SyncAPIClient, anthropic._base_client.AsyncAPIClient])
def test_the_installed_sdks_requests_take_their_keywords_directly(owner: type) -> None:
    original = owner.__dict__["request"]
    assert taking_keywords(original, stream=False, stream_cls=None) is original


@pytest.mark.parametrize("owner", [httpx.Client, httpx.AsyncClient, httpx2.Client, httpx2.AsyncClient])
def test_httpx_send_takes_stream_directly(owner: type) -> None:
    original = owner.__dict__["send"]
    assert taking_keywords(original, stream=False) is original


def test_a_function_without_the_keywords_gets_only_those_given_another_value() -> None:
    def request(cast_to: Any, options: Any, *, stream: bool = False) -> tuple[Any, ...]:
        return cast_to, options, stream

    adapted = taking_keywords(request, stream=False, stream_cls=None)
    assert adapted is not request
    assert adapted(int, "options", stream=False, stream_cls=None) == (int, "options", False)
    assert adapted(int, "options", stream=True, stream_cls=None) == (int, "options", True)
    with pytest.raises(TypeError, match="stream_cls"):  # as the function itself answers such a call
        adapted(int, "options", stream=True, stream_cls=list)


def test_another_default_is_adapted_too() -> None:
    def send(request: Any, *, stream: bool | None = None) -> Any:
        return stream

    adapted = taking_keywords(send, stream=False)
    assert adapted is not send
    assert adapted("request", stream=False) is None  # the function's own default, not the wrapper's
    assert adapted("request", stream=True) is True


class _OlderSdk:
    """An SDK client as anthropic 0.40 had it: ``remaining_retries`` before the keywords; answers with what it got."""

    base_url = httpx.URL("https://api.anthropic.com")

    def request(self, cast_to: Any, options: Any, remaining_retries: int | None = None, *, stream: bool = False,
                stream_cls: Any = None) -> tuple[Any, ...]:
        return "sync", remaining_retries, stream, stream_cls


class _OlderAsyncSdk:
    base_url = httpx.URL("https://api.anthropic.com")

    async def request(self, cast_to: Any, options: Any, remaining_retries: int | None = None, *,
                      stream: bool = False, stream_cls: Any = None) -> tuple[Any, ...]:
        return "async", remaining_retries, stream, stream_cls


def _messages_options() -> SimpleNamespace:
    return SimpleNamespace(method="post", url="/v1/messages", headers={}, extra_json=None,
                           json_data={"model": "claude-haiku-4-5", "max_tokens": 8, "messages": []})


def test_an_older_sdk_gets_every_argument_and_its_calls_are_recorded(watch: Any, llm_spans: SpansOf) -> None:
    watch()
    patcher = Patcher()
    install(SimpleNamespace(SyncAPIClient=_OlderSdk, AsyncAPIClient=_OlderAsyncSdk), patcher, "anthropic")  # type: ignore[arg-type]
    try:
        sdk, older_async = _OlderSdk(), _OlderAsyncSdk()
        assert sdk.request(dict, _messages_options(), 2, stream=True, stream_cls=list) == ("sync", 2, True, list)
        assert sdk.request(dict, _messages_options(), remaining_retries=1) == ("sync", 1, False, None)
        assert sdk.request(dict, _messages_options()) == ("sync", None, False, None)
        assert asyncio.run(older_async.request(dict, _messages_options(), 3)) == ("async", 3, False, None)
        # Not an LLM request (a GET): passed through untouched, nothing recorded.
        assert sdk.request(dict, SimpleNamespace(method="get", url="/v1/models"), 4) == ("sync", 4, False, None)
    finally:
        patcher.restore()
    spans = llm_spans()
    assert [(span["name"], span["model"]) for span in spans] == [("anthropic.messages", "claude-haiku-4-5")] * 4
