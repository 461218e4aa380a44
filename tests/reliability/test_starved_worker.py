"""A program that releases the GIL often and briefly (here: the openai client answered in process, which draws
``os.urandom`` per request; a plain loop and an asyncio one) must not starve the export worker: every span of a
tight loop reaches the collector, none is dropped.

Without help the worker never took the GIL back while such a loop ran (CPython's GIL convoy): it sent nothing for
the whole run and the bounded queue dropped all but its last ``max_queue_size`` spans.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from agentwatch.server import Settings, start_background
from tests.reliability.conftest import run_script

CALLS = 8_000
QUEUE = 3_000  # well below CALLS: the worker has to keep up while the loop runs


@pytest.mark.parametrize("loop", ["sync", "asyncio"])
def test_a_tight_loop_of_in_process_calls_loses_no_span(tmp_path: Path, loop: str) -> None:
    handle = start_background(settings=Settings(db_path=tmp_path / "collector.db", alert_interval_seconds=3600),
                              port=0)
    try:
        done = run_script(f"""
            import asyncio, json
            import httpx, openai
            import agentwatch

            BODY = json.dumps({{"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
                               "choices": [{{"index": 0, "finish_reason": "stop",
                                            "message": {{"role": "assistant", "content": "hello"}}}}],
                               "usage": {{"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}}}).encode()
            MESSAGES = [{{"role": "user", "content": "hi"}}]

            def answer(request):
                return httpx.Response(200, content=BODY, headers={{"content-type": "application/json"}})

            async def answer_async(request):
                return answer(request)

            agentwatch.init(proxy_url="{handle.url}/api/ingest", max_queue_size={QUEUE})
            if "{loop}" == "asyncio":  # ten calls gathered at a time
                client = openai.AsyncOpenAI(api_key="k", base_url="http://127.0.0.1:9/v1",
                                            http_client=httpx.AsyncClient(transport=httpx.MockTransport(answer_async)))

                async def calls():
                    for _ in range({CALLS} // 10):
                        await asyncio.gather(*(client.chat.completions.create(
                            model="gpt-4o-mini", messages=MESSAGES) for _ in range(10)))

                asyncio.run(calls())
            else:
                client = openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1",
                                       http_client=httpx.Client(transport=httpx.MockTransport(answer)))
                for _ in range({CALLS}):
                    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            running = agentwatch.get_client().processor.stats()
            assert agentwatch.flush(30)
            print(json.dumps(running))
        """, tmp_path, timeout=120, env={"AGENTWATCH_DISABLED_PLUGINS": None})
        assert done.returncode == 0, done.stderr
        while_running = json.loads(done.stdout.splitlines()[-1])
        connection = sqlite3.connect(tmp_path / "collector.db")
        try:
            stored = connection.execute("SELECT count(*) FROM spans WHERE kind = 'llm'").fetchone()[0]
        finally:
            connection.close()
    finally:
        handle.stop()
    assert while_running["dropped"] == 0
    assert while_running["sent"] > 0  # the worker exported while the loop ran, not only at its end
    assert stored == CALLS
