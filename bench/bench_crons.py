"""Cron monitoring cost: GET /api/crons' reports and one alert evaluation, with a store full of other spans.

    python bench/bench_crons.py [--spans 200000] [--crons 20] [--rounds 20]   (--crons 20: 20 daily, 20 */5)

Fills a SQLite store directly (ordinary LLM spans spread over 50 days, and for each cron one run a day, each
every five minutes for the last day), then times ``cron_report`` for every cron (what ``GET /api/crons``
computes) and ``alert_reports`` (what each alert evaluation computes when a cron rule exists). Prints
p50/max; asserts nothing about timing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from agentwatch.server import SQLiteStore
from agentwatch.server._crons import alert_reports, cron_report, learn_from_spans
from agentwatch.server._model import SpanRecord

S = 1_000_000_000
DAY = 86400 * S


def _record(index: int, name: str, kind: str, start: int, attributes: dict[str, object]) -> SpanRecord:
    return SpanRecord(f"{index:032x}", f"{index:016x}", None, name, kind, "ok", start, start + S,
                      attributes=dict(attributes))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--crons", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    now = time.time_ns()
    with tempfile.TemporaryDirectory() as directory:
        store = SQLiteStore(Path(directory) / "bench.db")
        batch: list[SpanRecord] = []
        for index in range(args.spans):
            batch.append(_record(index, "openai.chat", "llm", now - 50 * DAY + index * (50 * DAY // args.spans), {}))
            if len(batch) == 5000:
                store.ingest(batch)
                batch = []
        index = args.spans
        for cron in range(args.crons):
            daily = f"daily-{cron}"
            runs = [_record(index + day, daily, "cron", now - day * DAY,
                            {"cron.name": daily, "cron.schedule": "0 3 * * *", "cron.success": True})
                    for day in range(50)]
            index += 50
            runs += [_record(index + k, f"five-{cron}", "cron", now - k * 300 * S,
                             {"cron.name": f"five-{cron}", "cron.schedule": "*/5 * * * *"}) for k in range(288)]
            index += 288
            store.ingest(runs)
            learn_from_spans(store, runs)
        crons = store.list_crons()
        timings: dict[str, list[float]] = {"GET /api/crons (all crons, 20 runs each)": [],
                                           "alert evaluation (all crons, last day)": []}
        for _ in range(args.rounds):
            started = time.perf_counter()
            for cron in crons:
                cron_report(store, cron, time.time_ns(), 20)
            timings["GET /api/crons (all crons, 20 runs each)"].append(time.perf_counter() - started)
            started = time.perf_counter()
            alert_reports(store, time.time_ns())
            timings["alert evaluation (all crons, last day)"].append(time.perf_counter() - started)
        print(f"{args.spans} other spans, {len(crons)} crons")
        for name, values in timings.items():
            print(f"{name:45s} p50 {statistics.median(values) * 1000:8.1f} ms   max {max(values) * 1000:8.1f} ms")
        store.close()


if __name__ == "__main__":
    main()
