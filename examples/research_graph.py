"""The graph the LangGraph examples run: planner → researcher (4 rounds) → writer, on scripted models.

A stand-in for your own graph: no API key, no network. Each model answers from a script and reports the token usage
a gpt-4o call would, so AgentWatch prices it from its table: a research round costs about $0.05, so a researcher
budget of $0.12 an hour runs out during round 3 and round 4 is stopped before it starts.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.graph import END, START, StateGraph

RESEARCH_ROUNDS = 4


class ScriptedChatModel(BaseChatModel):
    """Answers from ``replies`` and reports ``input_tokens`` / ``output_tokens`` as gpt-4o's usage."""

    replies: list[str]
    input_tokens: int = 1_500
    output_tokens: int = 400
    position: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        # What a real chat model tells LangChain's tracers, AgentWatch's among them: the provider and model priced.
        return LangSmithParams(ls_provider="openai", ls_model_name="gpt-4o", ls_model_type="chat")

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        reply = self.replies[self.position % len(self.replies)]
        self.position += 1
        usage = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                 "total_tokens": self.input_tokens + self.output_tokens}
        message = AIMessage(content=reply, usage_metadata=usage,  # type: ignore[arg-type]
                            response_metadata={"model_name": "gpt-4o", "finish_reason": "stop"})
        return ChatResult(generations=[ChatGeneration(message=message)])


class ResearchState(TypedDict):
    topic: str
    plan: str
    notes: Annotated[list[str], operator.add]
    report: str


def build_workflow(checkpointer: Any) -> Any:
    """The compiled graph, checkpointed by ``checkpointer`` (a resumed run goes on from its last finished node)."""
    planner_model = ScriptedChatModel(replies=["1. scope the EU AI Act's logging duties 2. compare tools 3. write"])
    researcher_model = ScriptedChatModel(input_tokens=16_000, output_tokens=1_000, replies=[
        "Article 12 requires automatic recording of events over the system's lifetime.",
        "Logs must allow identifying situations that may present a risk.",
        "Records must cover periods of use, reference data and the persons involved.",
        "Retention: at least six months unless other law says otherwise.",
    ])
    writer_model = ScriptedChatModel(input_tokens=6_000, output_tokens=1_200, replies=[
        "Report: runaway agents are stopped before they spend; every breaker transition is logged for Article 12."])

    def planner(state: ResearchState) -> dict[str, Any]:
        return {"plan": str(planner_model.invoke(f"Plan research on {state['topic']}").content)}

    def researcher(state: ResearchState) -> dict[str, Any]:
        note = researcher_model.invoke(f"Research round {len(state['notes']) + 1}: {state['plan']}")
        return {"notes": [str(note.content)]}

    def more_research(state: ResearchState) -> str:
        return "researcher" if len(state["notes"]) < RESEARCH_ROUNDS else "writer"

    def writer(state: ResearchState) -> dict[str, Any]:
        return {"report": str(writer_model.invoke("Write up: " + " ".join(state["notes"])).content)}

    graph = StateGraph(ResearchState)
    graph.add_node("planner", planner)
    graph.add_node("researcher", researcher)
    graph.add_node("writer", writer)
    graph.add_edge(START, "planner")
    graph.add_edge("planner", "researcher")
    graph.add_conditional_edges("researcher", more_research, ["researcher", "writer"])
    graph.add_edge("writer", END)
    return graph.compile(checkpointer=checkpointer)
