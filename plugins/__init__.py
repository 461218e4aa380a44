"""Framework plugins: ``agentwatch.plugins.<framework>``, found through the ``agentwatch.plugins`` entry points."""
