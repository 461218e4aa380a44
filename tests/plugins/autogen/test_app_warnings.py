"""AutoGen's warnings about the program's own calls name the program's lines with AgentWatch on, as without it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

from autogen_core.models import UserMessage

import agentwatch
from tests.stubs.provider_server import Reply

HELLO = [UserMessage(content="hello", source="user")]
Seen = list[tuple[str, str, int]]


async def _warned(stub: Any, model_client: Any) -> Seen:
    """Two calls on two lines whose answers name another model than the client's (AutoGen warns, stacklevel=2),
    and a stream given a deprecated argument: each warning's category, file and line."""
    stub.queue(Reply(content="one", model="gpt-4o-2024-08-06"))
    stub.queue(Reply(content="two", model="gpt-4o-2024-08-06"))
    stub.queue(Reply(content="three"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        await model_client.create(HELLO)
        await model_client.create(HELLO)
        async for _ in model_client.create_stream(HELLO, max_consecutive_empty_chunk_tolerance=1):
            pass
    return [(w.category.__name__, w.filename, w.lineno) for w in caught]


async def test_autogens_warnings_name_the_programs_lines_once_per_line(memory, stub_provider, model_client):
    plain = await _warned(stub_provider, model_client)
    agentwatch.init(exporters=[memory])
    watched = await _warned(stub_provider, model_client)

    assert [(kind, Path(name).name) for kind, name, _ in plain] == [
        ("UserWarning", "test_app_warnings.py"), ("UserWarning", "test_app_warnings.py"),
        ("DeprecationWarning", "test_app_warnings.py")]
    assert watched == plain
    agentwatch.flush()
    assert len([span for span in memory.spans if span["kind"] == "llm"]) == 3


def test_a_deprecation_warning_triggered_in_main_is_shown(stub_provider, tmp_path):
    # Python shows a DeprecationWarning by default only where it names __main__.
    program = textwrap.dedent(f"""
        import asyncio, agentwatch
        agentwatch.init(exporters=[])
        from autogen_core.models import UserMessage
        from autogen_ext.models.openai import OpenAIChatCompletionClient

        async def main():
            client = OpenAIChatCompletionClient(model="gpt-4o-mini", base_url={stub_provider.openai_base_url!r},
                                                api_key="test-key", max_retries=0)
            async for _ in client.create_stream([UserMessage(content="hi", source="user")],
                                                max_consecutive_empty_chunk_tolerance=1):
                pass
            await client.close()

        asyncio.run(main())
    """)
    stub_provider.queue(Reply(content="hi"))
    script = tmp_path / "app.py"
    script.write_text(program)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{script}:10: DeprecationWarning: The 'max_consecutive_empty_chunk_tolerance'" in done.stderr
    assert "agentwatch" not in done.stderr.lower()
