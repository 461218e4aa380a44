"""No collector at exit: the program leaves promptly, its spans go to the spool, and a later run delivers them.

Exit timings are printed by ``bench/bench_exit.py`` (no timing asserts here).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

from agentwatch.server import Settings, start_background
from tests.reliability.conftest import free_port, run_script, stored_span_ids

SPANS = 300


def _spooled_spans(spool: Path) -> list[dict]:
    files = sorted(spool.rglob("*.json.gz"))
    return [span for path in files for span in json.loads(gzip.decompress(path.read_bytes()))]


def test_spans_of_a_run_without_collector_are_spooled_and_delivered_by_the_next_run(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here during the first run: every connection is refused
    url = f"http://127.0.0.1:{port}/api/ingest"
    spool = tmp_path / "spool"
    env = {"AGENTWATCH_SPOOL_DIR": str(spool)}
    first = run_script(f"""
        import agentwatch
        agentwatch.init(proxy_url="{url}", max_batch_size=100)
        for i in range({SPANS}):
            agentwatch.event(f"first-{{i}}")
    """, tmp_path, env=env, name="first.py")
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    spooled = _spooled_spans(spool)
    names = {span["name"] for span in spooled}
    assert {f"first-{i}" for i in range(SPANS)} <= names
    first_ids = {span["span_id"] for span in spooled}

    handle = start_background(settings=Settings(db_path=tmp_path / "collector.db", alert_interval_seconds=3600),
                              port=port)
    try:
        second = run_script(f"""
            import agentwatch
            agentwatch.init(proxy_url="{url}")
            agentwatch.event("second")
            assert agentwatch.flush(30)
        """, tmp_path, env=env, name="second.py")
        assert second.returncode == 0, second.stderr
        stored = set(stored_span_ids(tmp_path / "collector.db"))
    finally:
        handle.stop()
    assert first_ids <= stored
    assert not list(spool.rglob("*.json.gz")), "delivered batches are removed from the spool"


def test_spool_can_be_switched_off(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/ingest"
    result = run_script(f"""
        import agentwatch
        agentwatch.init(proxy_url="{url}", spool_dir="")
        agentwatch.event("nowhere")
        agentwatch.shutdown()
        print(agentwatch.get_state())
    """, tmp_path, env={"XDG_CACHE_HOME": str(tmp_path / "cache"), "AGENTWATCH_SPOOL_DIR": None})
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.rglob("*.json.gz"))


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG cache directory: Linux and other Unixes")
def test_default_spool_is_the_per_user_cache_directory(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/ingest"
    cache = tmp_path / "cache"
    result = run_script(f"""
        import agentwatch
        agentwatch.init(proxy_url="{url}")
        agentwatch.event("cached")
    """, tmp_path, env={"XDG_CACHE_HOME": str(cache), "HOME": str(tmp_path), "AGENTWATCH_SPOOL_DIR": None})
    assert result.returncode == 0, result.stderr
    spooled = _spooled_spans(cache / "agentwatch" / "spool")
    assert "cached" in {span["name"] for span in spooled}
    destinations = list((cache / "agentwatch" / "spool").rglob("destination.txt"))
    assert [path.read_text().strip() for path in destinations] == [url]
