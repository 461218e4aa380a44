"""The causal graph of a trace: agents, tools and LLM calls, and who called whom, from the span tree.

Plumbing spans (chains, graph nodes, plain spans) are not nodes: an edge skips over them to the nearest
ancestor that is one. An agent is one node however many spans it has, so a loop between two agents shows
as two edges with counts rather than a long chain. ATP ``links`` add their own typed edges.
"""

from __future__ import annotations

from typing import Any

from ._model import LLM_KINDS
from ._stats import usd

__all__ = ["build_graph"]

_TOOL_KINDS = frozenset({"tool", "retriever"})
#: Kinds that make a node by themselves; a span of another kind is one only as an ATP agent or a root.
_NODE_KINDS = frozenset({"agent"}) | LLM_KINDS | _TOOL_KINDS
_UNSEEN: Any = object()
_ON_PATH: Any = object()


def _agent_key(span: dict[str, Any]) -> str | None:
    return span.get("agent_id") or span.get("agent_name")


class _Builder:
    def __init__(self, spans: list[dict[str, Any]]) -> None:
        self.spans = {span["span_id"]: span for span in spans}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._node_of_span: dict[str, str | None] = {}
        # The node a span stands for in its descendants' eyes (its own, or its nearest ancestor's): memoised, so
        # a deep chain of plumbing spans is walked once, not once per span (that was quadratic in depth).
        self._node_below: dict[str, str | None] = {}

    def node_for(self, span: dict[str, Any]) -> str | None:
        """The graph node a span stands for, creating it on first sight; None for plumbing spans."""
        span_id = span["span_id"]
        node_id = self._node_of_span.get(span_id, _UNSEEN)
        if node_id is not _UNSEEN:
            return node_id
        kind = span.get("kind")
        node_id = None
        if kind not in _NODE_KINDS and not span.get("attributes") and span.get("parent_span_id") in self.spans:
            pass  # the common case of a deep trace, decided without the checks below
        elif kind == "agent" and _agent_key(span):
            node_id = f"agent:{_agent_key(span)}"
            self._add(node_id, "agent", span.get("agent_name") or _agent_key(span) or span["name"], span)
        elif kind in LLM_KINDS:
            node_id = f"llm:{span_id}"
            self._add(node_id, "llm", span.get("model") or span["name"], span)
        elif kind in _TOOL_KINDS:
            node_id = f"tool:{span_id}"
            self._add(node_id, "tool", span["name"], span)
        elif _agent_key(span) and "atp.kind" in (span.get("attributes") or {}):
            # ATP has no agent span kind: every span names the agent doing the work, so any ATP span stands for
            # its agent (an agent that made no LLM call is still a node).
            node_id = f"agent:{_agent_key(span)}"
            self._add(node_id, "agent", span.get("agent_name") or _agent_key(span) or span["name"], span)
        elif span.get("parent_span_id") not in self.spans:
            node_id = f"root:{span_id}"
            self._add(node_id, "root", span["name"], span)
        self._node_of_span[span_id] = node_id
        return node_id

    def _add(self, node_id: str, node_type: str, label: str, span: dict[str, Any]) -> None:
        node = self.nodes.get(node_id)
        if node is None:
            node = self.nodes[node_id] = {
                "id": node_id, "type": node_type, "label": label, "span_ids": [], "calls": 0,
                "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "duration_ms": 0.0, "status": "ok",
            }
            if node_type == "agent":
                node["agent_id"] = span.get("agent_id")
                node["agent_role"] = span.get("agent_role")
            if node_type == "llm":
                node["model"] = span.get("model")
                node["provider"] = span.get("provider")
        node["span_ids"].append(span["span_id"])
        node["calls"] += 1
        duration = span.get("duration_ms")
        if duration is None and "end_time_unix_nano" in span:  # graph_spans leaves it to the nodes' spans
            duration = round((span["end_time_unix_nano"] - span["start_time_unix_nano"]) / 1e6, 3)
        node["duration_ms"] = round(node["duration_ms"] + float(duration or 0.0), 3)
        if span.get("status") in ("error", "blocked") and node["status"] != "blocked":
            node["status"] = span["status"]

    def _agent_node(self, span: dict[str, Any]) -> str | None:
        key = _agent_key(span)
        if not key:
            return None
        node_id = f"agent:{key}"
        if node_id not in self.nodes:
            self.nodes[node_id] = {
                "id": node_id, "type": "agent", "label": span.get("agent_name") or key, "span_ids": [], "calls": 0,
                "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "duration_ms": 0.0, "status": "ok",
                "agent_id": span.get("agent_id"), "agent_role": span.get("agent_role"),
            }
        return node_id

    def parent_node(self, span: dict[str, Any]) -> str | None:
        """The nearest ancestor of ``span`` that is a graph node; None if none (or only a parent cycle) is."""
        path: list[str] = []
        spans: dict[Any, dict[str, Any]] = self.spans
        node_below: dict[Any, Any] = self._node_below
        node_of_span: dict[Any, Any] = self._node_of_span
        parent_id: Any = span.get("parent_span_id")
        parent = spans.get(parent_id) if parent_id else None
        found: str | None = None
        while parent is not None:
            below = node_below.get(parent_id, _UNSEEN)
            if below is not _UNSEEN:
                # _ON_PATH: a parent cycle with no node on it (this walk marked it), so found stays None
                found = None if below is _ON_PATH else below
                break
            node = node_of_span.get(parent_id, _UNSEEN)
            if node is _UNSEEN:
                node = self.node_for(parent)
            if node is not None:
                node_below[parent_id] = found = node
                break
            path.append(parent_id)
            node_below[parent_id] = _ON_PATH
            parent_id = parent.get("parent_span_id")
            parent = spans.get(parent_id) if parent_id else None
        for span_id in path:
            self._node_below[span_id] = found
        return found

    def edge(self, source: str, target: str, kind: str) -> None:
        if source == target:
            return
        edge = self.edges.get((source, target, kind))
        if edge is None:
            self.edges[(source, target, kind)] = {"source": source, "target": target, "type": kind, "count": 1}
        else:
            edge["count"] += 1


def _edge_type(source: dict[str, Any], target: dict[str, Any]) -> str:
    if target["type"] == "agent":
        return "delegates" if source["type"] == "agent" else "invokes"
    if target["type"] == "tool":
        return "uses_tool"
    return "calls"


def build_graph(spans: list[dict[str, Any]]) -> dict[str, Any]:
    builder = _Builder(spans)
    by_id, node_of_span = builder.spans, builder._node_of_span
    for span in spans:
        # Plumbing spans (most of a deep trace) are settled here, without the calls below.
        if span.get("kind") not in _NODE_KINDS and not span.get("attributes") \
                and span.get("parent_span_id") in by_id:
            node_of_span[span["span_id"]] = None
            continue
        node = builder.node_for(span)
        if node is None:
            continue
        parent = builder.parent_node(span)
        # An LLM call or tool made inside an agent's context belongs to that agent even when the
        # framework put no agent span in between.
        own_agent = builder._agent_node(span) if node.startswith(("llm:", "tool:")) else None
        if own_agent and (parent is None or not parent.startswith("agent:")):
            if parent is not None:
                builder.edge(parent, own_agent, _edge_type(builder.nodes[parent], builder.nodes[own_agent]))
            parent = own_agent
        if parent is not None:
            builder.edge(parent, node, _edge_type(builder.nodes[parent], builder.nodes[node]))
        target = builder.nodes[node]
        target["input_tokens"] += int(span.get("input_tokens") or 0)
        target["output_tokens"] += int(span.get("output_tokens") or 0)
        target["cost_usd"] = usd(target["cost_usd"] + float(span.get("cost_usd") or 0.0))
    for span in spans:
        attributes = span.get("attributes")
        if not attributes:
            continue
        links = attributes.get("links")
        if not isinstance(links, list):
            continue
        linked = builder.node_for(span) or builder.parent_node(span)
        for link in links:
            if not isinstance(link, dict) or link.get("span_id") not in builder.spans:
                continue
            source_span = builder.spans[link["span_id"]]
            source = builder.node_for(source_span) or builder.parent_node(source_span)
            if source and linked:
                builder.edge(source, linked, str(link.get("link_type") or "link").lower())
    return {"nodes": list(builder.nodes.values()), "edges": list(builder.edges.values())}
