"""``os.fork()`` (prefork servers, multiprocessing): the child records and exports its own spans and never
deadlocks on a lock the parent held at the moment of the fork, even while another thread enqueues hard."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

import agentwatch
from tests.reliability.conftest import run_script, scale, stored_span_ids

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")

FORKS = scale(12, 300)


def test_fork_while_another_thread_enqueues_heavily(tmp_path: Path) -> None:
    result = run_script(f"""
        import os, threading, time, agentwatch
        mem = agentwatch.InMemoryExporter()
        agentwatch.init(exporters=[mem], flush_interval=0.001, max_batch_size=16)
        stop = threading.Event()

        def hammer():
            i = 0
            while not stop.is_set() and i < 5_000_000:
                agentwatch.event(f"p{{i}}")
                i += 1

        thread = threading.Thread(target=hammer)
        thread.start()
        hung = failed = 0
        for n in range({FORKS}):
            time.sleep(0.01)
            pid = os.fork()
            if pid == 0:
                mem.clear()
                for j in range(100):
                    agentwatch.event(f"child-{{n}}-{{j}}")
                ok = agentwatch.flush(5)
                mine = [s for s in mem.spans if s["name"].startswith(f"child-{{n}}-")]
                os._exit(0 if ok and len(mine) == 100 else 3)
            deadline = time.monotonic() + 10
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    failed += os.waitstatus_to_exitcode(status) != 0
                    break
                if time.monotonic() > deadline:
                    hung += 1
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.01)
        stop.set()
        thread.join()
        assert agentwatch.flush(10)
        print(f"forks={FORKS} hung={{hung}} failed={{failed}}")
    """, tmp_path, timeout=150)
    assert result.returncode == 0, result.stderr
    assert f"forks={FORKS} hung=0 failed=0" in result.stdout, result.stdout + result.stderr


def test_multiprocessing_fork_pool_workers_export_their_spans(tmp_path: Path) -> None:
    target = tmp_path / "pool.jsonl"
    result = run_script(f"""
        import json, multiprocessing, agentwatch

        def work(n):
            with agentwatch.trace(f"task-{{n}}"):
                agentwatch.event(f"work-{{n}}")
            return agentwatch.flush(5)

        if __name__ == "__main__":
            agentwatch.init(exporters=["jsonl:{target}"], flush_interval=0.05)
            agentwatch.event("parent")
            with multiprocessing.get_context("fork").Pool(4) as pool:
                assert all(pool.map(work, range(200)))
            agentwatch.shutdown()
            names = [json.loads(line)["name"] for line in open("{target}")]
            assert sorted(n for n in names if n.startswith("work-")) == sorted(f"work-{{n}}" for n in range(200))
            assert names.count("parent") == 1, names.count("parent")
            print("ok")
    """, tmp_path)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_workers_that_end_normally_export_their_spans_without_a_flush(method: str,
                                                                                     tmp_path: Path) -> None:
    """Workers of a Process, a Pool (closed and joined) and a ProcessPoolExecutor record spans and return; nothing in
    them flushes, and the export interval (60 s) is longer than they live, so every span is still queued when they
    end. A fork or forkserver child leaves through os._exit(), where atexit does not run: its spans were lost (spawn
    children leave through sys.exit(), the control case)."""
    target = tmp_path / "workers.jsonl"
    result = run_script(f"""
        import concurrent.futures, json, multiprocessing, os, agentwatch

        # At import: in the parent, and again where a worker re-imports the main module (forkserver, spawn).
        agentwatch.init(exporters=["jsonl:{target}"], flush_interval=60)

        def work(n):
            with agentwatch.trace(f"task-{{n}}"):
                agentwatch.event(f"work-{{n}}")
            return os.getpid()

        if __name__ == "__main__":
            context = multiprocessing.get_context("{method}")
            processes = [context.Process(target=work, args=(n,)) for n in range(3)]
            for process in processes:
                process.start()
            for process in processes:
                process.join(30)
            assert [p.exitcode for p in processes] == [0, 0, 0]
            pool = context.Pool(3)
            pids = set(pool.map(work, range(100, 160)))
            pool.close()
            pool.join()
            with concurrent.futures.ProcessPoolExecutor(3, mp_context=context) as executor:
                pids |= set(executor.map(work, range(200, 260)))
            assert os.getpid() not in pids
            agentwatch.shutdown()
            names = [json.loads(line)["name"] for line in open("{target}")]
            work = sorted(n for n in names if n.startswith("work-"))
            expected = sorted(f"work-{{n}}" for n in [*range(3), *range(100, 160), *range(200, 260)])
            print("workers exported", len(work), "of", len(expected))
            assert work == expected
    """, tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "workers exported 123 of 123" in result.stdout, result.stdout


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_a_fresh_interpreter_worker_is_watched_with_the_settings_the_readme_hands_it(method: str,
                                                                                    tmp_path: Path) -> None:
    """README, "Other processes": init() only in the __main__ block, a spawn or forkserver worker is not watched; one
    handed the settings by a Pool initializer records its spans and enforces the limits."""
    target = tmp_path / "workers.jsonl"
    result = run_script(f"""
        import functools, json, multiprocessing, agentwatch

        def work(n):
            try:
                with agentwatch.llm_call("chat", model="gpt-4o", provider="openai") as call:
                    call.set_usage(input_tokens=10, output_tokens=5)
                return "ok"
            except agentwatch.CircuitBreakerException as blocked:
                return blocked.reason

        if __name__ == "__main__":
            settings = dict(exporters=["jsonl:{target}"], max_calls_per_minute=1, block_on_threshold=True)
            agentwatch.init(**settings)
            context = multiprocessing.get_context("{method}")
            with context.Pool(1) as pool:
                print("bare", pool.map(work, range(2)))
                pool.close()
                pool.join()
            with context.Pool(1, initializer=functools.partial(agentwatch.init, **settings)) as pool:
                print("handed", pool.map(work, range(2)))
                pool.close()
                pool.join()
            agentwatch.shutdown()
            print("llm spans", sorted(json.loads(line)["status"] for line in open("{target}")
                                      if json.loads(line)["kind"] == "llm"))
    """, tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bare ['ok', 'ok']" in result.stdout  # not watched: no limit, no span
    assert "handed ['ok', 'max_calls_per_minute']" in result.stdout
    assert "llm spans ['blocked', 'ok']" in result.stdout, result.stdout


def test_forked_children_and_parent_share_a_collector_without_mixing_connections(tmp_path: Path) -> None:
    """The HTTP exporter keeps a kept-alive connection; a child must not write into its parent's socket."""
    db = tmp_path / "fork.db"
    result = run_script(f"""
        import os, time, agentwatch
        from agentwatch.server import start_background
        server = start_background(port=0, db_path="{db}")
        agentwatch.init(proxy_url=server.url + "/api/ingest", flush_interval=0.01, max_batch_size=20)
        for i in range(200):
            agentwatch.event(f"parent-{{i}}")
        assert agentwatch.flush(10)
        pids = []
        for n in range(4):
            pid = os.fork()
            if pid == 0:
                for j in range(300):
                    agentwatch.event(f"child-{{n}}-{{j}}")
                ok = agentwatch.flush(20)
                state = agentwatch.get_state()["exporter"]
                os._exit(0 if ok and state["failed"] == 0 and state["sent"] >= 300 else 3)
            pids.append(pid)
        for i in range(200, 600):
            agentwatch.event(f"parent-{{i}}")
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
        assert agentwatch.flush(20)
        state = agentwatch.get_state()["exporter"]
        agentwatch.shutdown()
        server.stop()
        print("codes", codes, "state", state)
    """, tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "codes [0, 0, 0, 0]" in result.stdout, result.stdout + result.stderr
    names_expected = 1 + 600 + 4 * 300 + 4  # process span, parent events, child events (children: a process span)
    stored = stored_span_ids(db)
    assert len(stored) == len(set(stored))
    assert len(stored) >= names_expected - 4, len(stored)


@pytest.mark.parametrize("make", [lambda path: agentwatch.InMemoryExporter(),
                                  lambda path: agentwatch.JsonLinesExporter(path)], ids=["memory", "jsonl"])
def test_exporter_lock_held_by_a_parent_thread_at_fork_is_free_in_the_child(
        make: Any, tmp_path: Path) -> None:
    exporter = make(tmp_path / "spans.jsonl")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:  # the parent's export worker, caught in the middle of an export
        with exporter._lock:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status only
            free = exporter._lock.acquire(timeout=2)
            if free:
                exporter._lock.release()
            os._exit(0 if free and exporter.export([{"name": "from-child", "kind": "event"}]) else 3)
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        holder.join(10)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_forked_child_ends_on_sigterm_while_its_main_thread_waits_in_c(tmp_path: Path) -> None:
    """``Pool.terminate`` sends SIGTERM to workers that wait for a lock the parent holds. A Python-level handler runs
    only when the main thread is back in Python, so a SIGTERM that lands just before the wait, or on another thread,
    would leave the worker waiting forever (the fork-pool test above hung so, about once in 60 runs). Blocking SIGTERM
    on the child's main thread makes that certain: the signal goes to the child's export worker thread. The child must
    end by the signal, as it does without AgentWatch; the parent keeps its flush on SIGTERM."""
    target = tmp_path / "child.jsonl"
    result = run_script(f"""
        import multiprocessing, signal, time, agentwatch

        def child(lock):
            signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGTERM}})
            agentwatch.event("child")
            lock.acquire()  # held by the parent: the main thread waits in C

        if __name__ == "__main__":
            agentwatch.init(exporters=["jsonl:{target}"], flush_interval=0.05)
            assert callable(signal.getsignal(signal.SIGTERM))
            context = multiprocessing.get_context("fork")
            lock = context.Lock()
            lock.acquire()
            process = context.Process(target=child, args=(lock,))
            process.start()
            time.sleep(0.5)
            process.terminate()
            process.join(10)
            code = process.exitcode
            if code is None:
                process.kill()
                process.join()
            print("exitcode", code)
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "exitcode -15" in result.stdout, result.stdout


#: (the lock a parent thread holds at the fork, what the child then does that needs it)
_HELD_AT_FORK = {
    "monitor": ("client.monitor._lock", "agentwatch.get_state()"),
    "pricer": ("client.pricer._lock", "client.price('gpt-4o-2024-08-06', 'openai', 10, 10)"),
    "client registry": ("_client._lock", "agentwatch.shutdown()"),
    "agent scopes": ("client._agents_lock", "client.agent_scope('new-agent')"),
    "run budgets": ("_run_budget._keyed_lock", "instrumentation.run_budget('thread:t1', 1.0)"),
    "SIGTERM state": ("_signals._state_lock", "agentwatch.shutdown()"),
}


@pytest.mark.parametrize("held", list(_HELD_AT_FORK), ids=list(_HELD_AT_FORK))
def test_a_lock_held_by_a_parent_thread_at_fork_is_free_in_the_child(held: str, tmp_path: Path) -> None:
    """A thread of the program in the middle of an LLM call (its monitor's lock), of a price lookup, of init() or
    shutdown() while another thread forks: the child's own call that needs the same lock must not wait for a
    thread that does not exist there."""
    lock, action = _HELD_AT_FORK[held]
    result = run_script(f"""
        import os, threading, agentwatch
        from agentwatch import _client, _run_budget, _signals, instrumentation

        agentwatch.init(exporters=[])
        client = agentwatch.get_client()
        holding, release = threading.Event(), threading.Event()

        def hold():
            with {lock}:
                holding.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        holding.wait(10)
        pid = os.fork()
        if pid == 0:
            done = threading.Thread(target=lambda: {action}, daemon=True)
            done.start()
            done.join(5)
            os._exit(3 if done.is_alive() else 0)
        _, status = os.waitpid(pid, 0)
        release.set()
        holder.join(10)
        agentwatch.shutdown()
        print("child", os.waitstatus_to_exitcode(status))
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "child 0" in result.stdout, result.stdout


def test_a_fork_waits_for_the_export_workers_imports(tmp_path: Path) -> None:
    """The export worker does its deferred imports (the fingerprint's ``platform`` at its start; the HTTP client,
    JSON, gzip when it first wakes) right after ``init()``, which is when a prefork server forks. A child forked in
    the middle of one would hold the module half imported, its import lock owned by a thread the child does not
    have: the child's own ``import`` of it hangs. Here an exporter's deferred import takes 0.5 s, and the fork comes
    in the middle."""
    (tmp_path / "slow_import.py").write_text("import time\ntime.sleep(0.5)\nVALUE = 42\n")
    result = run_script(f"""
        import os, signal, sys, time
        sys.path.insert(0, {str(tmp_path)!r})
        import agentwatch

        class SlowToPrepare:
            def prepare(self):
                import slow_import  # noqa: F401  (deferred to the worker, as the HTTP exporter defers http.client)
            def export(self, spans):
                return True
            def force_flush(self, timeout=5.0):
                return True
            def shutdown(self):
                pass

        agentwatch.init(exporters=[SlowToPrepare()])
        agentwatch.flush(0.01)  # wakes the worker, which prepares its exporters first
        while "slow_import" not in sys.modules:  # the worker is inside the import
            time.sleep(0.001)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            signal.alarm(5)  # a hang ends the child (SIGALRM) instead of the test
            import slow_import
            agentwatch.event("child")
            os._exit(0 if slow_import.VALUE == 42 and agentwatch.flush(5) else 3)
        waited = time.monotonic() - started
        _, status = os.waitpid(pid, 0)
        print(f"fork waited {{waited:.2f}} s; child status {{status}}")
        sys.exit(os.waitstatus_to_exitcode(status))
    """, tmp_path, timeout=60)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "fork waited 0.4" in result.stdout or "fork waited 0.5" in result.stdout, result.stdout


#: (what a parent thread is doing at the fork, the lock it holds or None, what the child then does) with
#: ``limits_backend`` on a real redis-server: every LLM call consults the backend's health (its lock, while Redis
#: is down), a new agent scope looks its backend up (the module's lock), and a reconnect attempt in flight in the
#: parent is not the child's (without forgetting it, the child never tried Redis again).
_REDIS_AT_FORK = {
    "backend health": ("backend._lock", "backend.down = True; backend._retry_at = 0.0", "spend()"),
    "backend registry": ("_redis_backend._backends_lock", "",
                         "with agentwatch.agent('new-agent', budget_per_hour=10.0): spend()"),
    "reconnect in flight": (None, "backend.down = True; backend._retry_at = 0.0; backend._probing = True",
                            "spend()"),
}


@pytest.mark.parametrize("case", list(_REDIS_AT_FORK), ids=list(_REDIS_AT_FORK))
def test_the_redis_backend_is_usable_in_a_forked_child(case: str, tmp_path: Path) -> None:
    from tests.core.test_redis_limits import RedisServer, _need_redis_server

    _need_redis_server()
    lock, parent_state, action = _REDIS_AT_FORK[case]
    server = RedisServer().start()
    try:
        result = run_script(f"""
            import os, threading, time, agentwatch
            from agentwatch import _redis_backend

            url = {server.url + "?socket_timeout=1"!r}
            agentwatch.init(exporters=[], budget_per_hour=100.0, block_on_threshold=True, limits_backend=url)
            backend = _redis_backend.backend_for(url)

            def spend():
                with agentwatch.llm_call("chat", model="gpt-4o", provider="openai") as call:
                    call.set_usage(input_tokens=1000, output_tokens=0)

            spend()
            holding, release = threading.Event(), threading.Event()

            def hold():
                with {lock or "threading.Lock()"}:
                    holding.set()
                    release.wait(10)

            holder = threading.Thread(target=hold)
            holder.start()
            holding.wait(10)
            {parent_state}
            pid = os.fork()
            if pid == 0:
                def act():
                    {action}

                done = threading.Thread(target=act, daemon=True)
                done.start()
                done.join(5)
                # Reached Redis again: the child's call is in the shared window and the backend is up.
                os._exit(3 if done.is_alive() else 4 if backend.down else 0)
            _, status = os.waitpid(pid, 0)
            release.set()
            holder.join(10)
            print("child", os.waitstatus_to_exitcode(status))
        """, tmp_path, timeout=60)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    assert "child 0" in result.stdout, result.stdout + result.stderr
