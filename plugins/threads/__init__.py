"""Work handed to a thread pool is the submitter's work: nothing to import, ``agentwatch.init()`` activates it.

``ThreadPoolExecutor.submit`` (and so ``map``, and asyncio's ``run_in_executor`` / the default executor) runs the
function with the submitter's AgentWatch values: LLM calls made in the pool are recorded under the current span and
limited by the current agent scopes and run budgets, as the same calls made in the submitting thread are. Only
AgentWatch's values go with the work (``agentwatch.instrumentation.carry``): the worker sees nothing else of the
submitter's context, as without AgentWatch.
"""

from __future__ import annotations

__all__: list[str] = []
