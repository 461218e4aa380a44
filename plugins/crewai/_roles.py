"""Roles as they name agent scopes, and what each kickoff tells the client of them (for the warning, at shutdown, about
a per-agent limit that named no agent)."""

from __future__ import annotations

import re
from typing import Any

from crewai.agent.core import Agent
from crewai.crew import Crew

import agentwatch
from agentwatch.instrumentation import stop_on_exception

__all__ = ["role_name", "without_placeholders", "note_roles"]

#: A kickoff input placeholder in a role (``{topic}``), as CrewAI interpolates them.
PLACEHOLDER_RE = re.compile(r"\{[A-Za-z_][A-Za-z0-9_\-]*\}")


def role_name(role: Any) -> str | None:
    """A role as it names an agent: without surrounding whitespace.

    CrewAI keeps a role as written; in the ``config/agents.yaml`` of its project layout a folded ``role: >``
    ends with a newline ("Senior Data Researcher\\n"), which ``init(agents={"Senior Data Researcher": ...})``
    must still match."""
    return (str(role).strip() or None) if role else None


def without_placeholders(name: str) -> str:
    return " ".join(PLACEHOLDER_RE.sub(" ", name).split())


def _keys_naming(agent: Any) -> list[str]:
    """The ``init(agents=...)`` keys that would name ``agent`` (as ``_listener._scope_name`` matches them): its role as
    written, before a kickoff's inputs fill it in, and that role without its placeholders."""
    name = role_name(getattr(agent, "_original_role", None) or getattr(agent, "role", None))
    if not name:
        return []
    plain = without_placeholders(name) if "{" in name else None
    return [name, plain] if plain else [name]


@stop_on_exception
def note_roles(owner: Any) -> None:
    """A crew's or a lone agent's kickoff: tell the client which per-agent limits its agents match, so that it warns
    at shutdown about one that named no agent of any kickoff (a typo, a role renamed): it limited nothing."""
    client = agentwatch.get_client()
    if client is None or not client.config.agents:
        return
    if isinstance(owner, Crew):
        agents = [agent for agent in (*owner.agents, owner.manager_agent) if agent is not None]
        where = f"CrewAI crew {str(getattr(owner, 'name', None) or 'crew')!r}"
    elif isinstance(owner, Agent):
        agents, where = [owner], "CrewAI agent's kickoff"
    else:  # a Flow: the crews and agents it kicks off pass here themselves
        return
    client.note_agent_names([key for agent in agents for key in _keys_naming(agent)], where)
