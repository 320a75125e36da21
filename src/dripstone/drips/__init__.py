"""Drip campaigns: the graph, the pure engine that decides each step, and (elsewhere) the runner."""
