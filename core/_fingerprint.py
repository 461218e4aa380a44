"""A process fingerprint span at ``init()``: Python, OS, and versions of the frameworks present."""

from __future__ import annotations

import os
import platform
import sys
from typing import TYPE_CHECKING

from ._safe import stop_on_exception

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["record", "DETECTED_DISTRIBUTIONS"]

DETECTED_DISTRIBUTIONS = (
    "agentwatch", "langchain-core", "langgraph", "crewai", "autogen-agentchat", "autogen-core", "ag2",
    "pyautogen", "llama-index-core", "openai", "anthropic", "httpx", "httpx2", "requests", "aiohttp",
    "genai-prices", "pluggy",
)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version  # runs on the export worker, not at import

    found = {}
    for name in DETECTED_DISTRIBUTIONS:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


@stop_on_exception
def record(client: Client) -> None:
    span = client.start_span("process.start", "process", new_trace=True, activate=False)
    span.attributes.update({
        "python.version": platform.python_version(),
        "python.implementation": platform.python_implementation(),
        "os.name": platform.system(),
        "os.release": platform.release(),
        "host.arch": platform.machine(),
        "process.pid": os.getpid(),
        "process.executable": sys.executable,
        "packages": _versions(),
    })
    client.end_span(span)
