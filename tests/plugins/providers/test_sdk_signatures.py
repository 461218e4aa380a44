"""The SDK and httpx wrappers pass the SDK's keywords on by name, for any signature the SDKs have had.

The wrappers declare ``stream``/``stream_cls`` (``request``) and ``stream``/``auth``/``follow_redirects`` (``send``)
and forward them by name, which
CPython does without building a dict per call. That is only right for a method that takes them with those defaults
(``taking_keywords`` checks at patch time): the installed SDKs must get the direct path, and an older or another
signature (anthropic 0.40's positional ``remaining_retries``; a method without the keywords) must get every argument
exactly as without AgentWatch.
"""

from __future__ import annotations

import asyncio
import sys
from types import SimpleNamespace
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest

from agentwatch.plugins.http._httpx import _client_default
from agentwatch.plugins.http._patching import NOT_GIVEN, Patcher, taking_keywords
from agentwatch.plugins.http._sdk import install
from tests.plugins.providers.conftest import SpansOf
from tests.stubs.provider_server import Reply, StubProvider


@pytest.mark.parametrize("owner", [openai._base_client.SyncAPIClient, openai._base_client.AsyncAPIClient,
                                   anthropic._base_client.SyncAPIClient, anthropic._base_client.AsyncAPIClient])
def test_the_installed_sdks_requests_take_their_keywords_directly(owner: type) -> None:
    original = owner.__dict__["request"]
    assert taking_keywords(original, stream=False, stream_cls=None) == (original, {"stream": False, "stream_cls": None})


@pytest.mark.parametrize("owner", [openai._base_client.BaseClient, anthropic._base_client.BaseClient])
def test_the_installed_sdks_build_requests_taking_their_keyword_directly(owner: type) -> None:
    original = owner.__dict__["_build_request"]
    assert taking_keywords(original, retries_taken=0) == (original, {"retries_taken": 0})


@pytest.mark.parametrize("owner", [httpx.Client, httpx.AsyncClient, httpx2.Client, httpx2.AsyncClient])
def test_httpx_send_takes_its_keywords_directly(owner: type) -> None:
    original = owner.__dict__["send"]
    default = _client_default(original)
    assert default is sys.modules[owner.__module__.split(".")[0]].USE_CLIENT_DEFAULT
    called, _ = taking_keywords(original, stream=False, auth=default, follow_redirects=default)
    assert called is original


@pytest.mark.parametrize("module", [httpx, httpx2])
def test_other_traffic_keeps_its_auth_and_redirects(watch: Any, stub_provider: StubProvider, module: Any) -> None:
    """httpx's ``request()`` passes ``auth`` and ``follow_redirects`` to ``send`` on every request: through the tap,
    a request's own and the client's defaults must reach the server as without AgentWatch."""
    watch()
    base = stub_provider.base_url
    with module.Client(auth=("client", "default")) as client:
        client.get(f"{base}/v1/models")
        assert stub_provider.last.headers["authorization"] == "Basic Y2xpZW50OmRlZmF1bHQ="
        client.get(f"{base}/v1/models", auth=("request", "own"))
        assert stub_provider.last.headers["authorization"] == "Basic cmVxdWVzdDpvd24="
        stub_provider.queue(Reply(status=307, headers={"location": f"{base}/v1/files"}, raw_body=b""))
        assert client.get(f"{base}/v1/models").status_code == 307  # the client's default: not followed
        stub_provider.queue(Reply(status=307, headers={"location": f"{base}/v1/files"}, raw_body=b""))
        answer = client.get(f"{base}/v1/models", follow_redirects=True)
        assert ([hop.status_code for hop in answer.history], stub_provider.last.path) == ([307], "/v1/files")


def test_a_function_without_the_keywords_gets_exactly_the_keywords_given() -> None:
    def request(cast_to: Any, options: Any, *, stream: bool = False) -> tuple[Any, ...]:
        return cast_to, options, stream

    called, defaults = taking_keywords(request, stream=False, stream_cls=None)
    assert called is not request and defaults == {"stream": NOT_GIVEN, "stream_cls": NOT_GIVEN}
    assert not NOT_GIVEN  # a stream not asked for is no stream
    assert called(int, "options", stream=NOT_GIVEN, stream_cls=NOT_GIVEN) == (int, "options", False)
    assert called(int, "options", stream=True, stream_cls=NOT_GIVEN) == (int, "options", True)
    with pytest.raises(TypeError, match="stream_cls"):  # as the function itself answers such a call
        called(int, "options", stream=False, stream_cls=None)


def test_a_function_taking_any_keywords_gets_what_the_caller_gave() -> None:
    """Another instrumentation's ``def request(*args, **kwargs)`` that reads ``kwargs["stream"]`` (logfire's does):
    an explicit ``stream=False`` must reach it, and a keyword never given must not."""
    def request(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    called, defaults = taking_keywords(request, stream=False, stream_cls=None)
    assert called(1, stream=False, stream_cls=defaults["stream_cls"]) == {"stream": False}
    assert called(1, stream=defaults["stream"], stream_cls=defaults["stream_cls"]) == {}


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
