"""Roles as they name agent scopes, and what each kickoff tells the client of them (for the warning, at shutdown, about
a per-agent limit that named no agent)."""

from __future__ import annotations

import re
from typing import Any

from crewai.agent.core import Agent
from crewai.crew import Crew
from pydantic import BaseModel

import agentwatch
from agentwatch.instrumentation import stop_on_exception

__all__ = ["role_name", "original_role", "without_placeholders", "note_roles"]

#: A kickoff input placeholder in a role (``{topic}``), as CrewAI interpolates them.
#: Compiled by ``re`` on first use (from its cache after that): not at import, on the way of ``init()``.
PLACEHOLDER = r"\{[A-Za-z_][A-Za-z0-9_\-]*\}"


def role_name(role: Any) -> str | None:
    """A role as it names an agent: without surrounding whitespace.

    CrewAI keeps a role as written; in the ``config/agents.yaml`` of its project layout a folded ``role: >``
    ends with a newline ("Senior Data Researcher\\n"), which ``init(agents={"Senior Data Researcher": ...})``
    must still match."""
    return (str(role).strip() or None) if role else None


#: Agent class -> whether its ``_original_role`` is a plain pydantic private attribute (``_plain_private_role``).
_PLAIN_PRIVATE_ROLE: dict[type[Any], bool] = {}
_ORIGINAL_ROLE = "_original_role"


def original_role(agent: Any) -> Any:
    """``getattr(agent, "_original_role", None)``: the role as written, before a kickoff's inputs filled it in.

    Read from pydantic's private values where that is where ``getattr`` finds it: pydantic answers it from its
    ``__getattr__``, which first asks the private attribute for a ``__get__`` (raising AttributeError inside): a read
    cost ~18.2k instructions, ~3.2k through this function (callgrind); an agent's span and its LLM calls read it."""
    agent_type = agent.__class__
    plain = _PLAIN_PRIVATE_ROLE.get(agent_type)
    if plain is None:
        plain = _PLAIN_PRIVATE_ROLE[agent_type] = _plain_private_role(agent_type)
    if plain:
        private = agent.__pydantic_private__
        if type(private) is dict and _ORIGINAL_ROLE not in agent.__dict__:
            return private.get(_ORIGINAL_ROLE)  # pydantic's KeyError is getattr's default, None
    return getattr(agent, _ORIGINAL_ROLE, None)


def _plain_private_role(agent_type: type[Any]) -> bool:
    """Whether ``getattr`` finds an agent's ``_original_role`` only through pydantic's ``BaseModel.__getattr__``, as a
    private attribute whose default is no descriptor: nothing of that name on the class, no attribute hook of its
    own."""
    private_attributes = getattr(agent_type, "__private_attributes__", None)
    attribute = private_attributes.get(_ORIGINAL_ROLE) if isinstance(private_attributes, dict) else None
    return (attribute is not None and not hasattr(attribute, "__get__")
            and agent_type.__getattribute__ is BaseModel.__getattribute__
            and getattr(agent_type, "__getattr__", None) is getattr(BaseModel, "__getattr__", None)
            and not any(_ORIGINAL_ROLE in vars(klass) for klass in agent_type.__mro__))


def without_placeholders(name: str) -> str:
    return " ".join(re.sub(PLACEHOLDER, " ", name).split())


def _keys_naming(agent: Any) -> list[str]:
    """The ``init(agents=...)`` keys that would name ``agent`` (as ``_listener._scope_name`` matches them): its role as
    written, before a kickoff's inputs fill it in, and that role without its placeholders."""
    name = role_name(original_role(agent) or getattr(agent, "role", None))
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
