"""Graphs and steps the drip runner tests share."""

from __future__ import annotations

import itertools
import json
from typing import Any

from tests.conftest import Api
from tests.mailings.helpers import ok


def node(node_id: str, kind: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": kind, "data": data, "position": {"x": 0, "y": 0}}


def edge(source: str, target: str, handle: str | None = None) -> dict[str, Any]:
    return {"id": f"{source}-{target}", "source": source, "target": target, "sourceHandle": handle}


def graph(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> str:
    return json.dumps({"nodes": nodes, "edges": edges})


def chain(*nodes: dict[str, Any]) -> str:
    """A straight path through `nodes`, in order."""
    return graph(list(nodes), [edge(a["id"], b["id"]) for a, b in itertools.pairwise(nodes)])


def two_emails(first: str, second: str, amount: float = 1, unit: str = "days") -> str:
    """trigger -> the email `first` -> a delay -> the email `second`."""
    return chain(
        node("t", "trigger"),
        node("a", "email", campaign_mailing_id=first),
        node("d", "delay", amount=amount, unit=unit),
        node("b", "email", campaign_mailing_id=second),
    )


def create(
    api: Api, list_id: str, nodes: str, trigger: str = "existing", name: str = "Welcome"
) -> str:
    body = {
        "drip_campaign": {
            "name": name,
            "subscription_list_id": list_id,
            "start_trigger": trigger,
            "drip_campaign_nodes": nodes,
        }
    }
    return str(ok(api.post("/drip_campaigns", body))["data"]["id"])


def start(api: Api, campaign_id: str) -> list[str]:
    jids: list[str] = ok(api.post(f"/drip_campaigns/{campaign_id}/start"))["data"]["jids"]
    return jids


def report(api: Api, campaign_id: str) -> dict[str, Any]:
    data: dict[str, Any] = ok(api.get(f"/drip_campaigns/{campaign_id}/report"))["data"]
    return data
