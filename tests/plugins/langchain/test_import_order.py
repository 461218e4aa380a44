"""Zero-config tracing whatever the import order: ``init()`` first, then the handler's import brings in LangChain."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _output_of(program: str) -> list[str]:
    """The lines ``program`` prints in a fresh interpreter (in this one langchain_core is imported already), which must
    end well and log no internal error."""
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "internal error" not in run.stderr, run.stderr
    return run.stdout.splitlines()


_PROGRAM = """
import agentwatch
memory = agentwatch.InMemoryExporter()
agentwatch.init(exporters=[memory])
{import_line}
from langchain_core.language_models import FakeListChatModel
FakeListChatModel(responses=["a"]).invoke("x")
agentwatch.flush()
print(sorted(span["name"] for span in memory.by_kind("llm")), "langchain" in agentwatch.get_state()["plugins"])
"""


@pytest.mark.parametrize("import_line", [
    # imports langchain_core: the plugin's hook runs while the handler's module is half-imported
    "from agentwatch.plugins.langchain import AgentWatchHandler",
    # a module of the plugin that the handler imports: it must not bring in LangChain (and so run the hook) itself
    "import agentwatch.plugins.langchain._messages",
])
def test_plugin_imported_after_init_still_instruments_langchain(import_line: str) -> None:
    assert _output_of(_PROGRAM.format(import_line=import_line))[0] == "['FakeListChatModel'] True"


_PAUSING_PROGRAM = """
import agentwatch
memory = agentwatch.InMemoryExporter()
agentwatch.init(budget_per_hour=0.01, block_on_threshold=True, exporters=[memory],
                cost_table_override={{"gpt-4o": {{"input": 2.5, "output": 10.0}}}})
{import_line}
from typing import TypedDict
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from agentwatch.plugins.langchain import AgentWatchHandler

def answer(text):
    usage = {{"input_tokens": 10000, "output_tokens": 1000, "total_tokens": 11000}}
    return AIMessage(content=text, usage_metadata=usage, response_metadata={{"model_name": "gpt-4o"}})

llm = GenericFakeChatModel(messages=iter([answer("a"), answer("b")]))

class State(TypedDict, total=False):
    a: str
    b: str

builder = StateGraph(State)
builder.add_node("one", lambda state: {{"a": llm.invoke("one").content}})
builder.add_node("two", lambda state: {{"b": llm.invoke("two").content}})
builder.add_edge(START, "one")
builder.add_edge("one", "two")
builder.add_edge("two", END)
graph = builder.compile(checkpointer=InMemorySaver())
config = {{"configurable": {{"thread_id": "t"}}, "callbacks": [AgentWatchHandler(on_budget="interrupt")]}}
paused = graph.invoke({{}}, config)
print("paused", "__interrupt__" in paused and paused["__interrupt__"][0].value["reason"])
print("resumed", graph.invoke(Command(resume={{"increase_budget": 1.0}}), config))
"""


@pytest.mark.parametrize("import_line", ["from langgraph.types import Command", "from langgraph.func import task",
                                         "import langgraph.errors", "import langgraph.graph"])
def test_a_pause_works_whatever_langgraph_module_comes_first(import_line: str) -> None:
    """Found 2026-12-05: with ``langgraph.types`` (or ``.func``, ``.errors``) the first LangGraph import after
    ``init()``, the handler was made while ``langgraph.errors`` could not be imported yet and never let LangGraph's
    interrupt through: the pause was swallowed and the blocked model call ran, uncharged."""
    assert _output_of(_PAUSING_PROGRAM.format(import_line=import_line)) == [
        "paused budget_per_hour", "resumed {'a': 'a', 'b': 'b'}"]


_DEFERRED_PROGRAM = """
import sys
from langchain_core.language_models import FakeListChatModel
import agentwatch
memory = agentwatch.InMemoryExporter()
agentwatch.init(exporters=[memory])
deferred = ("langchain_core.tracers.context", "langchain_core.language_models.llms")
print("imported by init():", [name for name in deferred if name in sys.modules])
FakeListChatModel(responses=["a"]).invoke("x")
from langchain_core.language_models import FakeListLLM  # a completion model, imported after init()
FakeListLLM(responses=["b"]).invoke("y")
agentwatch.flush()
print(sorted(span["name"] for span in memory.by_kind("llm")))
"""


def test_init_leaves_langchains_deferred_imports_to_langchain() -> None:
    """LangChain imports its tracer context (LangSmith's client with it) only when a first run configures callbacks,
    and ``BaseLLM``'s module (PyYAML with it) only for a completion model: ``init()`` imports neither (~75 ms and ~18 ms
    of CPU), and registers its configure hook and patches ``BaseLLM`` when LangChain does. Both kinds of model are
    traced all the same."""
    assert _output_of(_DEFERRED_PROGRAM) == ["imported by init(): []", "['FakeListChatModel', 'FakeListLLM']"]


_GRAPH_FIRST_PROGRAM = """
import sys
from typing import TypedDict
from langgraph.graph import StateGraph
import agentwatch

class State(TypedDict):
    text: str

def model_node(state: State) -> State:
    from langchain_core.language_models import FakeListChatModel  # the program's first chat model, after init()
    between = [agentwatch.current_llm_call() for _ in FakeListChatModel(responses=["a b"]).stream("x")]
    print("current between chunks:", set(between))
    return {"text": FakeListChatModel(responses=["c"]).invoke(state["text"]).content}

memory = agentwatch.InMemoryExporter()
agentwatch.init(exporters=[memory])
print("imported by init():", "langchain_core.language_models.chat_models" in sys.modules)
graph = StateGraph(State)
graph.add_node("model", model_node)
graph.set_entry_point("model")
print(graph.compile().invoke({"text": "hi"}))
agentwatch.flush()
print(sorted(span["name"] for span in memory.by_kind("llm")))
"""


def test_a_graph_program_gets_its_chat_models_patched_when_it_imports_them() -> None:
    """``BaseChatModel``'s module (~31 ms of imports, LangSmith's run trees among them) is LangGraph's to import, or
    the program's: ``init()`` patches its entry points when it is imported, as it does ``BaseLLM``'s. A chat model
    imported inside a node, after ``init()``, keeps the consumer of its stream outside the call."""
    assert _output_of(_GRAPH_FIRST_PROGRAM) == ["imported by init(): False", "current between chunks: {None}",
                                                "{'text': 'c'}", "['FakeListChatModel', 'FakeListChatModel']"]


_MESSAGES_FIRST_PROGRAM = """
import sys
from langchain_core.messages import HumanMessage
import agentwatch

memory = agentwatch.InMemoryExporter()
agentwatch.init(exporters=[memory])
print("callback manager imported by init():", "langchain_core.callbacks.manager" in sys.modules)
from langchain_core.language_models import FakeListChatModel  # its module imports the callback manager half way
between = [agentwatch.current_llm_call() for _ in FakeListChatModel(responses=["a b"]).stream("x")]
print("current between chunks:", set(between))
print(FakeListChatModel(responses=["c"]).invoke([HumanMessage("hi")]).content)
agentwatch.flush()
print(sorted(span["name"] for span in memory.by_kind("llm")))
"""


def test_init_leaves_the_callback_manager_to_the_program_that_imported_only_messages() -> None:
    """Found 2026-12-07: a program that imported ``langchain_core.messages`` (or ``.prompts``, ``.tools``) before
    ``init()`` had ``init()`` import LangChain's callback manager, and most of langchain-core with it: init() took
    ~550 ms instead of ~25. LangChain is now instrumented when the program imports the manager, which its first chat
    model's module does half way through its own import: that module is patched when its import completes."""
    assert _output_of(_MESSAGES_FIRST_PROGRAM) == ["callback manager imported by init(): False",
                                                   "current between chunks: {None}", "c",
                                                   "['FakeListChatModel', 'FakeListChatModel']"]


_INIT_FIRST_PROGRAM = """
import agentwatch
memory = agentwatch.InMemoryExporter()
agentwatch.init(exporters=[memory])
{import_line}
from langchain_core.language_models import FakeListChatModel
from langchain_core.prompts import ChatPromptTemplate
chain = ChatPromptTemplate.from_messages([("user", "{{q}}")]) | FakeListChatModel(responses=["a"]).with_fallbacks(
    [FakeListChatModel(responses=["b"])])
print(chain.invoke({{"q": "x"}}).content, agentwatch.current_llm_call())
agentwatch.flush()
print(sorted({{span["kind"] for span in memory.spans}} & {{"chain", "llm"}}))
"""


@pytest.mark.parametrize("import_line", [
    "from langchain_core.prompts import ChatPromptTemplate",  # the manager's import ends inside runnables' own
    "from langgraph.graph import StateGraph",
    "import langchain_core.runnables",
    "import langchain_core",
])
def test_init_first_then_langchain_whatever_its_first_import(import_line: str) -> None:
    """Found 2026-12-07 (this session's change, before it landed): instrumenting LangChain when its callback manager
    is imported ran inside LangChain's own imports, and importing ``Runnable`` from there raised (a half-imported
    module): nothing was traced. Whatever the program imports first after ``init()``, its chains are traced."""
    assert _output_of(_INIT_FIRST_PROGRAM.format(import_line=import_line)) == ["a None", "['chain', 'llm']"]
