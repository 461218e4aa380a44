"""``zero_data_retention=True`` keeps no prompt or answer text in error messages either. Found 2026-12-06: a span's
``error.message`` kept the error's text whole, and error texts quote prompts and answers (a provider's 400 quoting the
request, LangChain's ``OutputParserException`` holding the model's answer), so they reached the collector."""

from __future__ import annotations

import json

import pytest

import agentwatch
from tests.stubs.provider_server import Reply, StubProvider


@pytest.mark.parametrize("zero_data_retention", [True, False])
def test_error_messages_follow_zero_data_retention(memory: agentwatch.InMemoryExporter, stub_provider: StubProvider,
                                                   zero_data_retention: bool) -> None:
    import openai

    agentwatch.init(exporters=[memory], zero_data_retention=zero_data_retention, capture_messages=True)
    client = openai.OpenAI(base_url=stub_provider.openai_base_url, api_key="x", max_retries=0)
    stub_provider.queue(Reply(status=400, error_body={"error": {"message": "cannot read 'SECRET-PROMPT'",
                                                                "type": "invalid_request_error"}}))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "SECRET-PROMPT"}])
    with pytest.raises(ValueError):
        with agentwatch.span("parse"):
            raise ValueError("could not parse the answer: SECRET-ANSWER")
    agentwatch.flush()
    failed = {span["name"]: span for span in memory.spans if span["status"] == "error"}
    assert set(failed) == {"openai.chat.completions", "parse"}
    assert failed["parse"]["attributes"]["error.type"] == "ValueError"
    assert failed["openai.chat.completions"]["attributes"]["error.type"] == "BadRequestError"
    sent = json.dumps(memory.spans)
    if zero_data_retention:
        assert "SECRET" not in sent
        assert failed["parse"]["attributes"]["error.message"] == "(message not kept: zero_data_retention)"
    else:
        assert "SECRET-PROMPT" in failed["openai.chat.completions"]["attributes"]["error.message"]
        assert failed["parse"]["attributes"]["error.message"] == "could not parse the answer: SECRET-ANSWER"
