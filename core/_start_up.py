"""Start-up without a full garbage collection: ``import agentwatch`` and the first ``init()`` hold automatic
collections, and that ``init()`` moves the objects alive then to the permanent generation.

A program that has imported its frameworks first (LangGraph and openai: ~170k objects) is usually due a full
collection, and our own imports' allocations are what set it off: ~90 ms of walking the program's start-up objects,
all alive, inside ``import agentwatch`` or ``init()``. Held until ``init()`` has frozen them, that pass walks nothing.
A program that never calls ``init()`` has its pass at its own next allocations, as it would have without us.
"""

from __future__ import annotations

import gc

__all__ = ["collections_held", "freeze_start_up_objects", "release_collections"]

_frozen = False


def collections_held() -> bool:
    """Hold automatic collections (explicit ``gc.collect()`` still runs) unless the program manages its generations
    itself (collections disabled, or objects frozen already); True if held: pass it to ``release_collections``."""
    if _frozen or not gc.isenabled() or gc.get_freeze_count():
        return False
    gc.disable()
    return True


def release_collections(held: bool) -> None:
    if held:
        gc.enable()


def freeze_start_up_objects(held: bool) -> None:
    """Once per process, after the first ``init()``: move the objects that exist now (the modules, classes and
    functions of AgentWatch and of the program's start-up: ~15k with nothing else imported) to the permanent
    generation, so that no full collection of the program's own garbage walks them again (without it each such
    pass costs ~2-4 ms more). They are start-up objects that live as long as the process; one that later becomes
    cyclic garbage is left to refcounting (a program that manages its generations itself, with ``gc.freeze`` or
    ``gc.disable``, is left alone; ``held``: what ``collections_held`` answered, collections enabled before)."""
    global _frozen
    if _frozen:
        return
    _frozen = True
    if held or (gc.isenabled() and gc.get_freeze_count() == 0):
        gc.freeze()
