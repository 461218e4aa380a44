"""The demo's multi-agent LangGraph workflow on scripted models (no API key, no network)."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.graph import END, START, StateGraph

__all__ = ["ScriptedChatModel", "ResearchState", "build_workflow", "RESEARCH_ROUNDS", "AGENT_LIMITS"]

RESEARCH_ROUNDS = 4

#: Per-agent budgets (USD per hour). The researcher's deep-research loop costs about $0.05 a round, so
#: its $0.12 budget runs out during round 3 and round 4 is stopped before it starts.
AGENT_LIMITS: dict[str, dict[str, Any]] = {
    "planner": {"budget_per_hour": 0.50, "block_on_threshold": True, "role": "Planner"},
    "researcher": {"budget_per_hour": 0.12, "block_on_threshold": True, "role": "Researcher"},
    "writer": {"budget_per_hour": 0.50, "block_on_threshold": True, "role": "Writer"},
}


class ScriptedChatModel(BaseChatModel):
    """Stands in for gpt-4o: answers from a script and reports realistic token usage."""

    model_name: str = "gpt-4o"
    replies: list[str] = []
    input_tokens: int = 1_500
    output_tokens: int = 400
    cached_tokens: int = 0
    position: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return LangSmithParams(ls_provider="openai", ls_model_name=self.model_name, ls_model_type="chat")

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        reply = self.replies[self.position % len(self.replies)] if self.replies else "ok"
        self.position += 1
        usage = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                 "total_tokens": self.input_tokens + self.output_tokens,
                 "input_token_details": {"cache_read": self.cached_tokens}}
        message = AIMessage(content=reply, usage_metadata=usage,  # type: ignore[arg-type]
                            response_metadata={"model_name": self.model_name, "finish_reason": "stop"})
        return ChatResult(generations=[ChatGeneration(message=message)])


class ResearchState(TypedDict):
    topic: str
    plan: str
    notes: Annotated[list[str], operator.add]
    report: str


def build_workflow(checkpointer: Any) -> tuple[Any, dict[str, ScriptedChatModel]]:
    models = {
        "planner": ScriptedChatModel(replies=["1. scope the EU AI Act's logging duties 2. compare tools 3. write"]),
        "researcher": ScriptedChatModel(input_tokens=16_000, output_tokens=1_000, cached_tokens=4_000, replies=[
            "Article 12 requires automatic recording of events over the system's lifetime.",
            "Logs must allow identifying situations that may present a risk.",
            "Records must cover periods of use, reference data and the persons involved.",
            "Retention: at least six months unless other law says otherwise.",
        ]),
        "writer": ScriptedChatModel(input_tokens=6_000, output_tokens=1_200,
                                    replies=["Report: runaway agents are stopped before they spend; every "
                                             "breaker transition is logged for Article 12."]),
    }

    def planner(state: ResearchState) -> dict[str, Any]:
        return {"plan": str(models["planner"].invoke(f"Plan research on {state['topic']}").content)}

    def researcher(state: ResearchState) -> dict[str, Any]:
        note = models["researcher"].invoke(f"Research round {len(state['notes']) + 1}: {state['plan']}")
        return {"notes": [str(note.content)]}

    def more_research(state: ResearchState) -> str:
        return "researcher" if len(state["notes"]) < RESEARCH_ROUNDS else "writer"

    def writer(state: ResearchState) -> dict[str, Any]:
        return {"report": str(models["writer"].invoke("Write up: " + " ".join(state["notes"])).content)}

    graph = StateGraph(ResearchState)
    graph.add_node("planner", planner)
    graph.add_node("researcher", researcher)
    graph.add_node("writer", writer)
    graph.add_edge(START, "planner")
    graph.add_edge("planner", "researcher")
    graph.add_conditional_edges("researcher", more_research, ["researcher", "writer"])
    graph.add_edge("writer", END)
    return graph.compile(checkpointer=checkpointer), models


def stream_updates(graph: Any, inputs: Any, config: dict[str, Any]) -> Iterator[str]:
    for update in graph.stream(inputs, config, stream_mode="updates"):
        yield from update
