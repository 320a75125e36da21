"""What both schemathesis runs share: a bounded, reproducible configuration."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis


def bounded_config(
    key: str, *, mode: str, max_examples: int, deterministic: bool, **extra: Any
) -> schemathesis.Config:
    """A run authenticated with `key`: at most `max_examples` generated cases an operation,
    derandomized when `deterministic`, no stateful phase, and none of the health checks that
    requests to a real database trip (the deadline is off already: schemathesis sets
    `deadline=None`). `extra` adds top-level settings."""
    return schemathesis.Config.from_dict(
        {
            "headers": {"authorization": f"Token token={key}"},
            "generation": {
                "mode": mode,
                "max-examples": max_examples,
                "deterministic": deterministic,  # Hypothesis `derandomize`
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}},
            "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
            **extra,
        }
    )


def label_node_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's `from_fixture` reads and relabels `node._nodeid`, which pytest 9
    renamed; give the node the attribute it reads (it only feeds schemathesis' labels)."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
