"""``agentwatch demo``: a collector on SQLite and a multi-agent LangGraph run that trips and resumes.

The researcher agent overspends its budget in a deep-research loop; AgentWatch stops the next node
before it starts, the demo tops the budget up with ``e.monitor.increase_budget`` and resumes the graph
from its checkpoint: finished nodes do not run again.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._settings import Settings

__all__ = ["main", "run_demo"]


def _get(base: str, path: str) -> Any:
    with urllib.request.urlopen(f"{base}{path}", timeout=10) as response:
        return json.loads(response.read())


def run_demo(collector_url: str, checkpoint_path: Path, out: Any = sys.stdout) -> dict[str, Any]:
    """Run the workflow against the collector at ``collector_url``; returns what happened."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    import agentwatch
    from agentwatch import CircuitBreakerException

    from ._demo_workflow import AGENT_LIMITS, build_workflow, stream_updates

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    agentwatch.init(proxy_url=f"{collector_url}/api/ingest", budget_per_hour=5.0, block_on_threshold=True,
                    capture_messages=True, flush_interval=0.2, agents=AGENT_LIMITS)
    connection = sqlite3.connect(checkpoint_path, check_same_thread=False)
    graph, _ = build_workflow(SqliteSaver(connection))
    # Zero-config: nodes named like an agent in init(agents=...) become that agent's scope.
    config = {"configurable": {"thread_id": f"demo-{int(time.time())}"}}
    outcome: dict[str, Any] = {"blocked": None, "resumed_nodes": [], "first_nodes": []}
    say("Running planner → researcher (deep-research loop) → writer on scripted gpt-4o models ...")
    try:
        with agentwatch.trace("demo: EU AI Act research"):
            for node in stream_updates(graph, {"topic": "EU AI Act Article 12", "notes": []}, config):
                outcome["first_nodes"].append(node)
                say(f"  ✓ {node}")
    except CircuitBreakerException as blocked:
        outcome["blocked"] = {"reason": blocked.reason, "scope": blocked.scope, "scope_id": blocked.scope_id,
                              "current": blocked.current, "threshold": blocked.threshold}
        waiting = graph.get_state(config).next
        say(f"  ✗ blocked before {', '.join(waiting)}: {blocked.scope} {blocked.scope_id!r} {blocked.reason} "
            f"(${blocked.current:.4f} of ${blocked.threshold:.4f}); the checkpoint keeps every finished node")
        say(f"  → e.monitor.increase_budget(0.10), then graph.invoke(None, config) resumes at {waiting[0]}")
        blocked.monitor.increase_budget(0.10)
        with agentwatch.trace("demo: resume from checkpoint"):
            for node in stream_updates(graph, None, config):
                outcome["resumed_nodes"].append(node)
                say(f"  ✓ {node} (resumed)")
    outcome["report"] = graph.get_state(config).values.get("report")
    agentwatch.flush(10)
    agentwatch.shutdown()
    connection.close()
    return outcome


def _summary(base: str, outcome: dict[str, Any], out: Any, since_ns: int = 0) -> None:
    """This run's figures, read back from the collector: what started at ``since_ns`` or later."""
    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    # The database may hold earlier runs (the demo keeps its file): the summary is of this one.
    metrics = _get(base, f"/api/metrics?from={since_ns}")
    by_agent = _get(base, f"/api/cost/by-agent?from={since_ns}")
    breakers = [breaker for breaker in _get(base, "/api/circuit-breaker/status").get("breakers", [])
                if (breaker.get("last_transition_unix_nano") or 0) >= since_ns]
    earlier = int(_get(base, "/api/metrics").get("traces") or 0) - int(metrics.get("traces") or 0)
    say()
    say("Summary of this run (read back from the collector's REST API)")
    say(f"  traces {metrics.get('traces')}, spans {metrics.get('spans')}, LLM cost ${metrics.get('cost_usd', 0):.4f}, "
        f"blocked calls {metrics.get('blocked_calls')}")
    for row in by_agent.get("agents", []):
        name = row.get("agent_name") or row.get("agent_id")
        if not row.get("llm_calls"):
            continue
        say(f"  {name:<12} ${row['cost_usd']:.4f}  ({row['llm_calls']} LLM calls, {row.get('blocked', 0)} blocked)")
    for breaker in breakers:
        say(f"  breaker {breaker.get('scope')}/{breaker.get('scope_id')}: {breaker.get('state')} "
            f"(last: {breaker.get('last_event') or breaker.get('event')})")
    if outcome.get("blocked"):
        say(f"  block: {outcome['blocked']['scope_id']} {outcome['blocked']['reason']}; resumed nodes: "
            f"{', '.join(outcome['resumed_nodes'])}")
    say(f"  final report: {outcome.get('report')}")
    if earlier > 0:
        say(f"  (the database also holds {earlier} trace{'s' if earlier != 1 else ''} of earlier runs; the "
            "dashboard shows them all)")


def require_frameworks() -> None:
    """Raise ImportError before anything starts when LangGraph, its SQLite saver or LangChain is missing."""
    import langgraph.checkpoint.sqlite  # noqa: F401

    from . import _demo_workflow  # noqa: F401  (langchain_core and langgraph.graph)


def main(args: argparse.Namespace, settings: Settings | None = None) -> int:
    from . import start_background
    from ._listen import describe

    db_path = Path(args.db)
    # The settings the CLI resolved (flags, else HOST and PORT); a caller without them gives both as arguments.
    host = settings.host if settings is not None else getattr(args, "host", None) or "127.0.0.1"
    port = settings.port if settings is not None else args.port
    checkpoints = db_path.with_suffix(".checkpoints.sqlite")
    handle = None
    try:  # Ctrl-C, at any moment, stops the demo and its collector quietly
        try:
            handle = start_background(host, port, db_path, settings=settings)
        except (RuntimeError, TimeoutError) as error:
            print(f"agentwatch demo: {error}", file=sys.stderr)
            return 2
        except OSError as error:  # the port was taken since the CLI's check
            print(f"agentwatch demo: {describe(host, port, error, free_port_hint=True)}", file=sys.stderr)
            return 2
        base = f"http://{handle.host}:{handle.port}"
        started_ns = time.time_ns()
        outcome = run_demo(base, checkpoints)
        _summary(base, outcome, sys.stdout, started_ns)
        if getattr(args, "no_serve", False):
            return 0
        print(f"\nDashboard: {base}/", flush=True)
        print("Serving the dashboard; press Ctrl-C to stop.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    except RuntimeError as error:
        from ._cli import interrupt_behind

        if interrupt_behind(error) is None:
            raise
        return 0  # Ctrl-C while a class was being built (as init() imports its configuration): stopped all the same
    finally:
        if handle is not None:
            handle.stop()
