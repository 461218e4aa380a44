"""``init(providers=...)`` names the provider of every plugin's calls, by the one core rule.

A base URL registered as a local provider ("local": the user's own hardware, free per token) must name the
LLM spans of every framework that sends there, and make them cost nothing; without the registration the same
programs are priced as OpenAI or Anthropic calls (so the check can fail). AutoGen and AG2 used to decide by
an ``openai.com`` substring and ignored the registration.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.plugins.test_capture_everywhere import PROGRAMS, _exported
from tests.stubs.provider_server import Reply


def _llm_spans(framework: str, stub: Any, **settings: Any) -> list[dict[str, Any]]:
    replies = [Reply(content="ok", input_tokens=1_000, output_tokens=500) for _ in range(3)]
    spans = _exported(PROGRAMS[framework], stub, replies, **settings)
    return [span for span in spans if span["kind"] == "llm"]


@pytest.mark.parametrize("framework", sorted(PROGRAMS))
def test_registered_base_url_names_the_provider_everywhere(framework: str, stub_provider: Any) -> None:
    plain = _llm_spans(framework, stub_provider)
    assert all(span["provider"] != "local" and span["cost_usd"] > 0 for span in plain), plain

    registered = _llm_spans(framework, stub_provider, providers={stub_provider.base_url: "local"})
    assert [(span["provider"], span["cost_usd"]) for span in registered] == [("local", 0.0)] * len(plain)


@pytest.mark.parametrize("framework", ["autogen", "ag2"])
def test_registered_base_url_names_the_provider_without_the_http_layer(framework: str, stub_provider: Any) -> None:
    """AutoGen and AG2 know the client's base URL themselves: with no transport layer below (the HTTP
    plugins disabled) they still name the provider by the core rule."""
    without_http = {"disabled_plugins": ["http", "openai", "anthropic"]}
    plain = _llm_spans(framework, stub_provider, **without_http)
    assert plain and all(span["provider"] == "openai" and span["cost_usd"] > 0 for span in plain), plain

    registered = _llm_spans(framework, stub_provider, providers={stub_provider.base_url: "local"}, **without_http)
    assert [(span["provider"], span["cost_usd"]) for span in registered] == [("local", 0.0)] * len(plain)
