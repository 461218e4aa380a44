"""pytest plugin: LLM calls, tokens and USD cost per test, with per-test and session budgets.

Off unless asked for: ``pytest --agentwatch`` (or a budget option). Kept import-free so that merely
having AgentWatch installed costs a pytest run nothing.
"""
