"""Background work of the core's own, done by the export worker after each drain (as exporters' ``on_idle``): the
parts that need a timer and must not start a thread of their own register a task here.

A task runs on the worker's thread, about every ``flush_interval``; it decides itself whether anything is due, and
an internal error of one is logged, the others still run.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["every_idle", "idle_tasks"]

#: The registered tasks, in registration order (read by the export worker).
idle_tasks: list[Callable[[], object]] = []


def every_idle(task: Callable[[], object]) -> None:
    """Have the export worker run ``task`` whenever it is idle (once per task, however often registered)."""
    if task not in idle_tasks:
        idle_tasks.append(task)
