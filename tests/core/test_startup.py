"""What ``import agentwatch`` and ``init()`` load: no framework, no price table, no importlib.metadata; plugins
still activate when their framework is imported afterwards (fresh interpreters, as a user's program runs)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from agentwatch import _pricing
from agentwatch._entry_points import entry_points_of

_HEAVY = ("langchain_core", "crewai", "llama_index", "autogen_core", "autogen", "litellm", "genai_prices",
          "opentelemetry", "aiohttp", "importlib.metadata", "asyncio")


def _run(program: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(program)], capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_init_imports_no_framework_and_late_imports_are_instrumented() -> None:
    result = _run(f"""
        import json, sys
        import agentwatch
        agentwatch.init(proxy_url="http://127.0.0.1:9/api/ingest", spool_dir="")
        loaded = [name for name in {_HEAVY!r} if name in sys.modules]
        before = list(agentwatch.get_state()["plugins"])
        import langchain_core.callbacks
        import llama_index.core
        after = list(agentwatch.get_state()["plugins"])
        agentwatch.shutdown(0.1)
        print(json.dumps({{"loaded": loaded, "before": before, "after": after}}))
    """)
    assert result["loaded"] == []
    assert "langchain" not in result["before"] and "llamaindex" not in result["before"]
    assert {"langchain", "llamaindex"} <= set(result["after"])  # type: ignore[arg-type]


def test_framework_imported_before_init_is_instrumented_at_once() -> None:
    result = _run("""
        import json
        import crewai
        import agentwatch
        agentwatch.init(exporters=[])
        print(json.dumps({"plugins": agentwatch.get_state()["plugins"]}))
        agentwatch.shutdown(0.1)
    """)
    assert "crewai" in result["plugins"]  # type: ignore[operator]


def test_entry_point_scan_matches_importlib_metadata() -> None:
    for group in ("agentwatch.plugins", "pytest11"):
        ours = sorted((entry.name, entry.value) for entry in entry_points_of(group))
        theirs = sorted((entry.name, entry.value.split("[")[0].strip()) for entry in entry_points(group=group))
        assert ours == theirs


def test_provider_entry_alone_prices_as_the_whole_table() -> None:
    from genai_prices import data_snapshot

    checked = 0
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models[:5]:
            own = _pricing._find_in_own_provider(model.id, provider.id)
            if own is None:  # not found this way (e.g. an id its own match clause does not take): whole table
                continue
            whole = _pricing._find_in_table(model.id, provider.id)
            assert whole is not None
            assert (own[0].id, own[1].id, own[1].prices) == (whole[0].id, whole[1].id, whole[1].prices)
            checked += 1
    assert checked > 100


def test_import_alone_leaves_pluggy_config_and_the_network_modules_to_init() -> None:
    result = _run("""
        import json, sys
        before = set(sys.modules)
        import agentwatch
        loaded = [name for name in ("pluggy", "agentwatch._config", "agentwatch._pricing", "socket", "uuid",
                                    "hashlib") if name in sys.modules and name not in before]
        hookimpl_type = type(agentwatch.hookimpl).__name__  # resolved on first use
        print(json.dumps({"loaded": loaded, "hookimpl": hookimpl_type}))
    """)
    assert result == {"loaded": [], "hookimpl": "HookimplMarker"}


def test_logging_is_imported_only_when_a_message_may_go_somewhere() -> None:
    """``import agentwatch`` and ``init()`` import neither logging nor random (~7 ms of start-up): a DEBUG message
    before the program imports logging goes nowhere anyway (nothing configured), a warning still reaches stderr,
    and a program that configured logging gets our DEBUG messages."""
    quiet = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys
        import agentwatch
        agentwatch.init(proxy_url="http://127.0.0.1:9/api/ingest", spool_dir="")
        print("imported:", [name for name in ("logging", "random") if name in sys.modules])
        with agentwatch.span("job"):
            pass
        agentwatch.flush(2)
    """)], capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.splitlines() == ["imported: []"]
    assert "collector at http://127.0.0.1:9/api/ingest not reachable" in quiet.stderr  # a warning, from the worker
    verbose = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import logging
        logging.basicConfig(level=logging.DEBUG, format="%(name)s %(levelname)s %(message)s")
        import agentwatch
        agentwatch.init(exporters=[], disabled_plugins=["crewai"])
    """)], capture_output=True, text=True, timeout=60)
    assert verbose.returncode == 0, verbose.stderr
    assert "agentwatch DEBUG agentwatch: plugin 'crewai' disabled by configuration" in verbose.stderr


def test_first_init_freezes_start_up_objects_unless_the_program_manages_gc() -> None:
    program = """
        import gc, json
        {setup}
        import agentwatch
        agentwatch.init(exporters=[])
        first = gc.get_freeze_count()
        agentwatch.shutdown(0.1)
        agentwatch.init(exporters=[])
        print(json.dumps({{"first": first, "again": gc.get_freeze_count()}}))
        agentwatch.shutdown(0.1)
    """
    default = _run(program.format(setup=""))
    # Once: a second init() freezes nothing more (frozen objects freed by shutdown() leave the count).
    assert default["first"] > 1000 and default["again"] <= default["first"]  # type: ignore[operator]
    disabled = _run(program.format(setup="gc.disable()"))
    assert disabled == {"first": 0, "again": 0}


def test_a_warn_wrapper_made_while_watched_does_not_recurse_after_init_again() -> None:
    """Found 2026-12-06: ``init()``, then a library that wraps ``warnings.warn`` at its import (crewai filters
    pydantic's warnings so), then ``shutdown()`` and ``init()`` again: every warning raised RecursionError into the
    program, ours calling the library's wrapper, which called ours (what ``warnings.warn`` was when it wrapped it)."""
    result = _run("""
        import json, warnings
        import agentwatch
        agentwatch.init(exporters=[])
        before_library = warnings.warn

        def filtered_warn(message, category=None, stacklevel=1, source=None):
            return before_library(message, category, stacklevel + 1, source)

        warnings.warn = filtered_warn
        agentwatch.shutdown()
        agentwatch.init(exporters=[])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.warn("from the program", UserWarning)
        agentwatch.shutdown()
        print(json.dumps([[str(warning.message), warning.filename] for warning in caught]))
    """)
    assert result == [["from the program", "<string>"]]


_HOLDINGS = {
    "closure": """
        def wrapping(original):
            def filtered_warn(message, category=None, stacklevel=1, source=None):
                return original(message, category, stacklevel + 1, source)
            return filtered_warn
        warnings.warn = wrapping(warnings.warn)
    """,
    "default argument": """
        def filtered_warn(message, category=None, stacklevel=1, source=None, original=warnings.warn):
            return original(message, category, stacklevel + 1, source)
        warnings.warn = filtered_warn
    """,
    "partial in its globals": """
        import functools
        passing = functools.partial(warnings.warn)
        def filtered_warn(message, category=None, stacklevel=1, source=None):
            return passing(message, category, stacklevel + 1, source)
        warnings.warn = filtered_warn
    """,
    "a lambda's globals": """
        kept = warnings.warn
        def filtered_warn(message, category=None, stacklevel=1, source=None):
            passing = lambda: kept(message, category, stacklevel + 2, source)
            return passing()
        warnings.warn = filtered_warn
    """,
    "object": """
        class Filter:
            def __init__(self, original):
                self.original = original
            def __call__(self, message, category=None, stacklevel=1, source=None):
                return self.original(message, category, stacklevel + 1, source)
        warnings.warn = Filter(warnings.warn)
    """,
}


@pytest.mark.parametrize("holding", list(_HOLDINGS))
def test_a_warn_wrapper_holding_ours_any_way_does_not_recurse_after_init_again(holding: str) -> None:
    """As above, with the wrapper holding what ``warnings.warn`` was in other ways. The usual warning (stacklevel=2,
    from a library function the program calls) skips the re-entry guard when the function ours replaced cannot call ours
    again: each of these can. Warned twice, as the second is answered by the files already judged."""
    result = _run(f"""
        import json, textwrap, warnings
        import agentwatch
        agentwatch.init(exporters=[])
        exec(textwrap.dedent({_HOLDINGS[holding]!r}))
        agentwatch.shutdown()
        agentwatch.init(exporters=[])

        def deprecated():
            warnings.warn("deprecated", DeprecationWarning, stacklevel=2)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            deprecated()
            deprecated()
        agentwatch.shutdown()
        print(json.dumps([[str(warning.message), warning.filename] for warning in caught]))
    """)
    assert result == [["deprecated", "<string>"]] * 2


def test_a_warning_through_a_library_filter_made_before_import_names_the_programs_line() -> None:
    """A library that filtered ``warnings.warn`` before ``import agentwatch`` (crewai drops pydantic's deprecations so):
    ours passes the usual warning straight to its filter, one level up, and the warning names the line that called the
    function that warned, the first time (levels counted) and after (the file known)."""
    result = _run("""
        import json, sys, warnings

        def filtered_warn(message, category=None, stacklevel=1, source=None, original=warnings.warn):
            if category is PendingDeprecationWarning:
                return None
            return original(message, category, stacklevel + 1, source)

        warnings.warn = filtered_warn
        import agentwatch
        agentwatch.init(exporters=[])

        def deprecated(category):
            warnings.warn("deprecated", category, stacklevel=2)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            expected = [sys._getframe().f_lineno + 1, sys._getframe().f_lineno + 2]
            deprecated(DeprecationWarning)
            deprecated(DeprecationWarning)
            deprecated(PendingDeprecationWarning)
        agentwatch.shutdown()
        print(json.dumps({"expected": expected,
                          "caught": [[warning.filename, warning.lineno] for warning in caught]}))
    """)
    assert result["caught"] == [["<string>", line] for line in result["expected"]]  # type: ignore[union-attr]


def test_a_program_whose_collector_is_not_there_never_imports_the_http_client(tmp_path: Path) -> None:
    """The default setup with no collector running: the export worker finds no connection opens and spools the
    batches; the HTTP client (http.client with ssl and email, ~40 ms of a short script's exit here) is never
    imported."""
    result = _run(f"""
        import json, socket, sys
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.close()  # a port nothing listens on
        import agentwatch
        agentwatch.init(proxy_url=f"http://127.0.0.1:{{port}}/api/ingest", spool_dir={str(tmp_path)!r})
        agentwatch.event("first")
        first = agentwatch.flush(5)
        agentwatch.event("at exit")
        agentwatch.shutdown()
        imported = [name for name in ("http.client", "ssl") if name in sys.modules]
        print(json.dumps({{"delivered": first, "imported": imported}}))
    """)
    assert result == {"delivered": False, "imported": []}
    assert len(list(tmp_path.rglob("*.rows1.zst"))) == 2  # both batches kept for a later run


def test_a_program_due_a_full_collection_has_none_in_import_or_init() -> None:
    """Found 2026-12-07: a program that imported LangGraph and openai first (~170k objects) is due a full collection,
    and ``import agentwatch``'s own allocations set it off: ~90 ms walking the program's start-up objects, inside the
    import. Held until ``init()`` has frozen them, none runs; collections are enabled again after each."""
    result = _run("""
        import gc, json
        import langgraph.graph, openai  # the program's frameworks, imported first
        full = []
        gc.callbacks.append(lambda phase, info: full.append(phase) if info["generation"] == 2 else None)
        import agentwatch
        after_import = gc.isenabled()
        agentwatch.init(exporters=[])
        print(json.dumps({"full collections": len(full), "enabled": [after_import, gc.isenabled()],
                          "frozen": gc.get_freeze_count() > 100_000}))
        agentwatch.shutdown(0.1)
    """)
    assert result == {"full collections": 0, "enabled": [True, True], "frozen": True}


def test_a_program_that_disabled_collections_finds_them_disabled() -> None:
    result = _run("""
        import gc, json
        gc.disable()
        import agentwatch
        after_import = gc.isenabled()
        agentwatch.init(exporters=[])
        print(json.dumps([after_import, gc.isenabled(), gc.get_freeze_count()]))
        agentwatch.shutdown(0.1)
    """)
    assert result == [False, False, 0]
