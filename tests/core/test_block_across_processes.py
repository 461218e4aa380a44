"""A block raised in a worker process reaches the caller as ``CircuitBreakerException``. Found 2026-12-06: the exception
could not be pickled (its ``monitor`` holds locks and modules, and ``__init__`` takes more than the message), so a
``ProcessPoolExecutor`` future raised "TypeError: cannot pickle 'module' object", ``multiprocessing.Pool`` a
``MaybeEncodingError``, and ``copy.copy(e)`` a TypeError."""

from __future__ import annotations

import copy
import multiprocessing
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import agentwatch
from agentwatch import CircuitBreakerException
from tests.stubs.provider_server import StubProvider

PROGRAM = """
import concurrent.futures, multiprocessing, sys
import agentwatch
from agentwatch import CircuitBreakerException
from openai import OpenAI

def ask(base_url):
    client = OpenAI(base_url=base_url, api_key="x", max_retries=0)
    return client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}]).id

if __name__ == "__main__":
    agentwatch.init(exporters=[], budget_per_hour=1e-9, block_on_threshold=True)
    print("first", ask(sys.argv[1]))  # spends the budget: the workers, forked now, inherit the spend
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        try:
            pool.submit(ask, sys.argv[1]).result(timeout=60)
        except CircuitBreakerException as e:
            print("executor", e.reason, e.scope, e.scope_id, e.state["state"], e.monitor)
    with context.Pool(1) as pool:
        try:
            pool.apply_async(ask, (sys.argv[1],)).get(timeout=60)
        except CircuitBreakerException as e:
            print("pool", e.reason, e.scope)
"""


@pytest.mark.skipif(not hasattr(multiprocessing, "get_context") or sys.platform == "win32",
                    reason="fork is POSIX-only")
def test_a_block_in_a_worker_process_reaches_the_caller(tmp_path: Path) -> None:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    with StubProvider() as stub:
        done = subprocess.run([sys.executable, str(program), stub.openai_base_url], capture_output=True,
                              text=True, timeout=180, cwd=tmp_path)
        assert stub.count("/chat/completions") == 1  # only the parent's first call was sent
    assert done.returncode == 0, done.stderr
    assert "executor budget_per_hour global global OPEN None" in done.stdout, done.stdout + done.stderr
    assert "pool budget_per_hour global" in done.stdout, done.stdout + done.stderr


def test_a_copy_keeps_the_monitor_and_a_pickled_block_everything_else(stub_provider: StubProvider) -> None:
    from openai import OpenAI

    agentwatch.init(exporters=[], budget_per_hour=1e-9, block_on_threshold=True)
    client = OpenAI(base_url=stub_provider.openai_base_url, api_key="x", max_retries=0)
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(CircuitBreakerException) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    block = caught.value

    for clone in (copy.copy(block), copy.deepcopy(block)):
        assert type(clone) is CircuitBreakerException and str(clone) == str(block)
        assert clone.monitor is block.monitor and clone.state == block.state and clone.reason == "budget_per_hour"

    crossed = pickle.loads(pickle.dumps(block))
    assert str(crossed) == str(block)
    assert (crossed.reason, crossed.scope, crossed.scope_id, crossed.threshold, crossed.current, crossed.what) == \
        (block.reason, block.scope, block.scope_id, block.threshold, block.current, block.what)
    assert crossed.state == block.state and crossed.monitor is None
