"""The built-in exporters, offered to ``init(exporters=[...])`` by name through the plugin hook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._config import Config
from ._exporters import ConsoleExporter, HttpExporter, InMemoryExporter, JsonLinesExporter
from ._spool import spool_for
from .hookspecs import hookimpl

__all__ = ["agentwatch_make_exporter"]


@hookimpl(trylast=True)
def agentwatch_make_exporter(name: str, config: Config) -> Any:
    kind, _, argument = name.partition(":")
    if kind == "http":
        url = argument or config.proxy_url
        return HttpExporter(url, api_key=config.api_key, timeout=config.export_timeout, spool=spool_for(url, config))
    if kind == "console":
        return ConsoleExporter()
    if kind in ("jsonl", "file"):
        path = Path(argument or "agentwatch-spans.jsonl")
        if not path.parent.is_dir():  # else every export would fail, each an internal error in the log
            raise ValueError(f"exporters: {name!r}: the directory {str(path.parent)!r} does not exist")
        return JsonLinesExporter(path)
    if kind in ("memory", "inmemory"):
        return InMemoryExporter()
    return None
