"""The environment the tests that run every framework in one process set before any framework is imported: no
telemetry or tracking calls home (the machine is offline), CrewAI's storage in a folder of the tests', LiteLLM's
cost map from its package."""

from __future__ import annotations

import os

__all__ = ["keep_frameworks_offline"]

_OFFLINE = {"CREWAI_DISABLE_TELEMETRY": "true", "OTEL_SDK_DISABLED": "true", "CREWAI_TRACING_ENABLED": "false",
            "CREWAI_DISABLE_TRACKING": "true", "CREWAI_STORAGE_DIR": "/tmp/agentwatch-crewai-tests",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}


def keep_frameworks_offline() -> None:
    """Set each variable the program's environment does not set already."""
    for name, value in _OFFLINE.items():
        os.environ.setdefault(name, value)
