"""Fixtures of the core tests that talk to a real collector."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentwatch.server import ServerHandle, start_background


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[ServerHandle]:
    """A real collector on a free loopback port, its SQLite file in the test's directory."""
    handle = start_background(port=0, db_path=tmp_path / "collector.db")
    try:
        yield handle
    finally:
        handle.stop()
