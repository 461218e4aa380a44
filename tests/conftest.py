"""Shared fixtures: every test starts and ends without a running AgentWatch client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import agentwatch

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _no_client_between_tests(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
                             ) -> Iterator[None]:
    for name in [key for key in __import__("os").environ if key.startswith("AGENTWATCH_")]:
        monkeypatch.delenv(name)
    # Each test its own spool: batches one test could not deliver must not reach a later test's collector
    # (ports are reused), nor the user's cache directory.
    monkeypatch.setenv("AGENTWATCH_SPOOL_DIR", str(tmp_path_factory.mktemp("spool")))
    agentwatch.shutdown()
    yield
    agentwatch.shutdown(timeout=2.0)


@pytest.fixture
def memory() -> Iterator[agentwatch.InMemoryExporter]:
    """An in-memory exporter; pass it as ``init(exporters=[memory])`` and call ``agentwatch.flush()``."""
    yield agentwatch.InMemoryExporter()


@pytest.fixture
def stub_provider() -> Iterator[object]:
    """A stub LLM provider on 127.0.0.1 speaking the OpenAI and Anthropic wire formats."""
    from tests.stubs.provider_server import StubProvider

    with StubProvider() as server:
        yield server
