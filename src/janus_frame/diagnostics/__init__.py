"""Diagnostics: logs, explain() reports, the graph-break profiler."""
