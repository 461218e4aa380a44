"""Real classic AG2 agents (``from autogen import ConversableAgent``) talking to the stub provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

MODEL = "gpt-4o-mini-2024-07-18"


@pytest.fixture
def llm_config(stub_provider: Any) -> dict[str, Any]:
    return {"config_list": [{"model": MODEL, "api_key": "test-key", "base_url": stub_provider.openai_base_url,
                             "max_retries": 0}], "cache_seed": None}


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@pytest.fixture
def pair(llm_config: dict[str, Any]) -> tuple[Any, Any]:
    """An assistant with an ``add`` tool and a user proxy that runs it: the product docs' example."""
    return make_pair(llm_config, add, "add numbers")


def make_pair(llm_config: dict[str, Any], tool: Any, task: str) -> tuple[Any, Any]:
    """An assistant asking for ``tool`` (named after the function) and a user proxy that runs it."""
    from autogen import ConversableAgent

    name = tool.__name__
    assistant = ConversableAgent("assistant", llm_config=llm_config, human_input_mode="NEVER",
                                 system_message=f"You {task} with the {name} tool.")
    user = ConversableAgent("user", llm_config=False, human_input_mode="NEVER")
    assistant.register_for_llm(name=name, description=tool.__doc__)(tool)
    user.register_for_execution(name=name)(tool)
    return assistant, user


@pytest.fixture(autouse=True)
def _working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AG2's file logger makes autogen_logs/ in the working directory: kept out of the checkout (on sys.path)."""
    monkeypatch.chdir(tmp_path)
