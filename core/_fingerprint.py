"""A process fingerprint span at ``init()``: Python, OS, and versions of the frameworks present."""

from __future__ import annotations

import functools
import os
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


def _version_in(metadata_dir: str) -> str | None:
    for file_name in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(metadata_dir, file_name), encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if line.startswith("Version:"):
                        return line[len("Version:"):].strip()
                    if not line.strip():  # the end of the headers
                        break
        except OSError:
            continue
    return None


def _versions() -> dict[str, str]:
    """Read from the dist-info directories directly: importlib.metadata would cost the worker ~40 ms of CPU
    (and the user's thread the GIL meanwhile) right after init()."""
    return dict(_scan(tuple(sys.path)))


# Once per sys.path: a program that calls init() again (a test suite, a benchmark's rounds) would otherwise scan
# every distribution again each time (~1-2 ms of the worker's CPU right after init()).
@functools.lru_cache(maxsize=1)
def _scan(path: tuple[str, ...]) -> dict[str, str]:
    """The versions of ``DETECTED_DISTRIBUTIONS`` on ``path`` (``sys.path``, which ``distributions`` reads)."""
    from ._entry_points import distributions, normalize

    wanted = {normalize(name): name for name in DETECTED_DISTRIBUTIONS}
    found = {}
    for name, metadata_dir in distributions():
        if name in wanted:
            version = _version_in(metadata_dir)
            if version is not None:
                found[wanted[name]] = version
    return {name: found[name] for name in DETECTED_DISTRIBUTIONS if name in found}


@stop_on_exception
def record(client: Client) -> None:
    import platform  # here, on the export worker: it compiles a dozen regexes at import
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
