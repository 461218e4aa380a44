"""Hostile provider responses through the real ``openai`` client: with AgentWatch the user gets exactly what
they get without it (the same result object, or the same exception type and message).

Both runs happen in fresh interpreters against the same scripted stub, so nothing of one leaks into the
other; the comparison is of a JSON description of each outcome."""

from __future__ import annotations

import json
from pathlib import Path

from tests.reliability.conftest import run_script

_CASES = r'''
import json, sys
from tests.stubs.provider_server import StubProvider, Reply

ok = {"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
      "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}
CASES = {
    "truncated-json": Reply(raw_body=b'{"id": "c1", "choices": [{"index": 0, "mess'),
    "missing-usage": Reply(raw_body=json.dumps(ok).encode()),
    "negative-usage": Reply(raw_body=json.dumps({**ok, "usage": {"prompt_tokens": -5, "completion_tokens": -1,
                                                                 "total_tokens": -6}}).encode()),
    "garbage-usage": Reply(raw_body=json.dumps({**ok, "usage": {"prompt_tokens": "lots", "completion_tokens": None,
                                                                "total_tokens": [1]}}).encode()),
    "non-utf8": Reply(raw_body=b'{"id": "c1", "choices": [{"message": {"content": "\xff\xfe\xc3("}}]}'),
    "ten-mb": Reply(raw_body=json.dumps({**ok, "choices": [{"index": 0, "finish_reason": "stop", "message": {
        "role": "assistant", "content": "x" * (10 * 1024 * 1024)}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}).encode()),
    "http-500-garbage": Reply(status=500, raw_body=b"<html>\x00\xff oops"),
    "sse-cut-mid-stream": Reply(content="one two three four five six", cut_stream_after=3),
}

def describe(fn):
    try:
        value = fn()
    except Exception as error:  # the outcome the user sees
        return {"raised": type(error).__name__, "message": str(error)[:500]}
    return {"returned": value}

def run(client, name):
    if name.startswith("sse"):
        def consume():
            stream = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}],
                                                    stream=True, stream_options={"include_usage": True})
            out = []
            try:
                for chunk in stream:
                    out.append(chunk.model_dump(exclude={"id", "created"}))
            except Exception as error:
                out.append({"raised": type(error).__name__})
            return out
        return describe(consume)
    def call():
        result = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "q"}])
        dumped = result.model_dump()
        content = (dumped.get("choices") or [{}])[0].get("message", {}) or {}
        text = content.get("content") or ""
        dumped["choices"] = len(dumped.get("choices") or [])
        return {"dump": dumped, "len": len(text), "head": text[:50]}
    return describe(call)

def main(with_agentwatch):
    import openai
    if with_agentwatch:
        import agentwatch
        agentwatch.init(exporters=[agentwatch.InMemoryExporter()])
    outcomes = {}
    with StubProvider() as stub:
        client = openai.OpenAI(base_url=stub.openai_base_url, api_key="sk-test", max_retries=0, timeout=30)
        for name, reply in CASES.items():
            stub.queue(reply)
            outcomes[name] = run(client, name)
    if with_agentwatch:
        agentwatch.flush(5)
        outcomes["__agentwatch__"] = agentwatch.get_state()["plugins"]
    print("OUTCOMES=" + json.dumps(outcomes, sort_keys=True, default=str))

main(sys.argv[-1] == "with")
'''


def _outcomes(tmp_path: Path, mode: str) -> dict[str, object]:
    script = _CASES.replace('main(sys.argv[-1] == "with")', f"main({mode == 'with'!r})")
    result = run_script(script, tmp_path, name=f"hostile_{mode}.py", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("OUTCOMES="))
    return json.loads(line.removeprefix("OUTCOMES="))


def test_hostile_responses_reach_the_user_exactly_as_without_agentwatch(tmp_path: Path) -> None:
    without = _outcomes(tmp_path, "without")
    with_sdk = _outcomes(tmp_path, "with")
    plugins = with_sdk.pop("__agentwatch__")
    assert isinstance(plugins, list)
    assert set(without) == set(with_sdk) and len(without) == 8
    different = {name: (without[name], with_sdk[name]) for name in without if without[name] != with_sdk[name]}
    assert not different, json.dumps(different, indent=1, default=str)[:3000]
