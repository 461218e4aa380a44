"""An agent's id from its name: the SDK's (``agentwatch.agent("Support")`` is agent ``support``), and the collector's
for agents that other instrumentations name without an id (``gen_ai.agent.name``), so one agent is one row."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["agent_id_from_name"]


def agent_id_from_name(name: str) -> str:
    """Words of any script kept (``翻訳エージェント`` is its own agent, not "agent"), the rest made dashes; a name
    with no letter or digit gets an id from its hash, so two such agents stay apart."""
    slug = re.sub(r"[\W_]+", "-", unicodedata.normalize("NFKC", name).lower()).strip("-")
    if slug:
        return slug
    import hashlib  # here: rarely needed, and ``import agentwatch`` leaves it to the program (test_startup)

    return "agent-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
