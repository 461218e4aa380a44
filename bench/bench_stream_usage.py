"""What charging streams without usage costs per streamed chunk, and how close the estimate is.

    /work/venv/bin/python bench/bench_stream_usage.py [--chunks 200] [--rounds 30]

Per chunk of a typical OpenAI chat stream (one event of ~240 bytes), median over rounds:
- reading it as before (``BodyReader.feed`` without measuring the streamed text), for reference;
- reading it and measuring the streamed text for an estimate, as every stream does (the blocks that drop out of
  the kept ones are measured together, one regex pass per 256 KB of them, or at the end if no usage came);
- hiding what ``include_usage`` added (``UsageChunkFilter``), which only streams AgentWatch asked pay;
- for scale, the openai SDK's own work per chunk (``json.loads`` and building the ``ChatCompletionChunk``).

Then the estimate against the stub's own counts is not meaningful (the stub makes its numbers up), so the
accuracy figure printed is the estimator's tokens for a sample English text vs the 4-chars-per-token rule
OpenAI documents; with tiktoken's encodings cached offline it compares against o200k_base instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agentwatch._estimate import estimate_tokens  # noqa: E402
from agentwatch.plugins.http._body import BodyReader  # noqa: E402
from agentwatch.plugins.http._stream_usage import UsageChunkFilter  # noqa: E402

SAMPLE = ("The lighthouse keeper climbed the spiral stairs every evening at dusk, trimmed the wick, polished "
          "the great lens and wrote the weather into the log: wind north-west, sea moderate, visibility good. "
          "def handler(event): return {'status': 200, 'body': json.dumps(event)}\n") * 20


def _event(text: str, usage: bool) -> bytes:
    body = {"id": "chatcmpl-AbCdEf123456", "object": "chat.completion.chunk", "created": 1733240000,
            "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_abc123",
            "choices": [{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}]}
    if usage:
        body["usage"] = None
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def _per_chunk(run: object, chunks: list[bytes], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        run(chunks)  # type: ignore[operator]
        samples.append((time.perf_counter() - started) / len(chunks) * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    words = SAMPLE.split(" ")
    plain = [_event(words[i % len(words)] + " ", False) for i in range(args.chunks)]
    asked = [_event(words[i % len(words)] + " ", True) for i in range(args.chunks)]

    def read_without_counting(chunks: list[bytes]) -> None:
        reader = BodyReader("chat", "text/event-stream")
        reader._texts = None  # as before this change
        for chunk in chunks:
            reader.feed(chunk)
        reader.finish()

    def read(chunks: list[bytes]) -> None:
        reader = BodyReader("chat", "text/event-stream")
        for chunk in chunks:
            reader.feed(chunk)
        reader.finish()

    def hide(chunks: list[bytes]) -> None:
        usage_filter = UsageChunkFilter()
        for chunk in chunks:
            usage_filter(chunk)
        usage_filter.flush()

    from openai._models import construct_type
    from openai.types.chat import ChatCompletionChunk

    def sdk_parses(chunks: list[bytes]) -> None:  # for scale: what the openai SDK itself does per chunk
        for chunk in chunks:
            construct_type(type_=ChatCompletionChunk, value=json.loads(chunk[6:]))

    sdk = _per_chunk(sdk_parses, plain, args.rounds)
    before = _per_chunk(read_without_counting, plain, args.rounds)
    after = _per_chunk(read, plain, args.rounds)
    hidden = _per_chunk(hide, asked, args.rounds)
    print(f"per chunk: read {before:.2f} us, read + measure text {after:.2f} us (+{after - before:.2f}), "
          f"hide the usage fields {hidden:.2f} us (asked streams only); the openai SDK parsing it: {sdk:.2f} us")
    estimated = estimate_tokens(SAMPLE)
    print(f"sample text: {len(SAMPLE)} chars, estimated {estimated} tokens", end="")
    try:
        import tiktoken

        exact = len(tiktoken.get_encoding("o200k_base").encode(SAMPLE))
        print(f", o200k_base {exact} ({(estimated - exact) / exact:+.0%})")
    except Exception as error:  # no cached encodings offline
        print(f" (tiktoken unavailable offline: {type(error).__name__})")


if __name__ == "__main__":
    main()
