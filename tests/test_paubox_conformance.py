"""Paubox's own OpenAPI document for the Marketing API, as a test of the server.

The copy under tests/paubox holds the document's interface without its prose (made by
tests/paubox/strip_document.py). Schemathesis generates VALID requests from it (positive
mode) for every operation it documents, under Paubox's base path /v1/marketing, as an account
holding real rows: lists, subscribers with custom fields, mailings, a finished campaign send
that was opened and clicked through the real tracking URLs, and a drip campaign. Paths,
queries and bodies take those rows' ids some of the time, so found resources are exercised
too. Every answer must be no 5xx, have a status Paubox documents for the operation and match
the schema Paubox documents for that status.

The run is bounded (MAX_EXAMPLES cases per operation) and derandomized. For a deeper hunt:
DRIPSTONE_PAUBOX_EXAMPLES=100 DRIPSTONE_FUZZ_RANDOM=1 pytest tests/test_paubox_conformance.py
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import schemathesis
import yaml
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from dripstone import clock, db
from tests.conftest import Api, make_account
from tests.delivery.smtp_server import SmtpTestServer
from tests.drips.helpers import chain, node
from tests.drips.helpers import create as create_drip
from tests.fuzzing import bounded_config, label_node_for_schemathesis
from tests.mailings.conftest import run_tick, settings, smtp_server
from tests.mailings.helpers import add_subscribers, html_of, make_list, make_mailing, ok, send, to
from tests.paubox import strip_document

__all__ = ["run_tick", "settings", "smtp_server"]

DOCUMENT = Path(__file__).parent / "paubox" / "paubox-marketing-openapi.yaml"
MAX_EXAMPLES = int(os.environ.get("DRIPSTONE_PAUBOX_EXAMPLES", "12"))
DETERMINISTIC = not os.environ.get("DRIPSTONE_FUZZ_RANDOM")
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
FRESH_EMAILS = st.integers(min_value=0, max_value=10**9).map(lambda n: f"pb{n}@example.com")
PHONES = st.sampled_from(["+14155550123", "+442079460958"])
NAMES = st.integers(min_value=0, max_value=10**6).map(lambda n: f"Name {n}")
Tick = Callable[[], None]


# --- the committed copy ----------------------------------------------------------------------


def _keys(node: Any, *, naming_properties: bool = False) -> Iterator[str]:
    """Every keyword of the document (field names under `properties` are not keywords)."""
    if isinstance(node, list):
        for item in node:
            yield from _keys(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if not naming_properties:
                yield key
            yield from _keys(value, naming_properties=key == "properties" and not naming_properties)


def test_the_committed_document_carries_no_prose() -> None:
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    keywords = set(_keys(document))
    assert not keywords & {"description", "summary", "example", "examples"}
    assert set(document["info"]) == {"title", "version"}
    operations = [op for path in document["paths"].values() for op in path.values()]
    assert len(operations) == 41


def test_the_committed_document_is_what_the_script_makes_of_the_source() -> None:
    source = Path(
        os.environ.get(
            "DRIPSTONE_PAUBOX_SOURCE",
            Path(__file__).parents[2] / "shared" / "reference" / "paubox-marketing-openapi.yaml",
        )
    )
    if not source.is_file():
        pytest.skip(
            f"Paubox's original document is not at {source} (it is not part of the repository); "
            "set DRIPSTONE_PAUBOX_SOURCE to its path to check the committed copy against it"
        )
    made = strip_document.render(source.read_text(encoding="utf-8"))
    assert made == DOCUMENT.read_text(encoding="utf-8"), "run tests/paubox/strip_document.py"


# --- an account with real rows ---------------------------------------------------------------


@dataclass
class Rows:
    """Real ids of the account. `kept_*` are never fed to a delete; `doomed_*` may be."""

    default_list: str = ""
    kept_lists: list[str] = field(default_factory=list)
    doomed_lists: list[str] = field(default_factory=list)
    kept_subscribers: list[str] = field(default_factory=list)
    doomed_subscribers: list[str] = field(default_factory=list)
    subscriber_numbers: list[int] = field(default_factory=list)
    subscriptions: list[str] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    kept_mailings: list[str] = field(default_factory=list)
    doomed_mailings: list[str] = field(default_factory=list)
    sends: list[str] = field(default_factory=list)
    drips: list[str] = field(default_factory=list)
    html_ids: list[int] = field(default_factory=list)

    @property
    def lists(self) -> list[str]:
        return [self.default_list, *self.kept_lists]

    @property
    def mailings(self) -> list[str]:
        return [*self.kept_mailings, *self.doomed_mailings]


@pytest.fixture
def marketing(client: TestClient, database: db.Database) -> Api:
    """An account called under Paubox's base path, /v1/marketing."""
    return make_account(client, database, "pauboxer", orca=False)


def _open_and_click(client: TestClient, html: str) -> None:
    """What a recipient does: load the pixel, click the first link and the second."""
    pixel = re.search(r'<img src="(https://mail\.example\.com/t/o/[^"]+)"', html)
    assert pixel is not None
    assert client.get(urlsplit(pixel.group(1)).path).status_code == 200
    clicks = re.findall(r'href="(https://mail\.example\.com/t/c/[^"]+)"', html)
    for url in clicks[:2]:
        assert client.get(urlsplit(url).path, follow_redirects=False).status_code == 302


@pytest.fixture
def rows(
    marketing: Api,
    client: TestClient,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> Rows:
    api = marketing
    seed = Rows()
    lists = ok(api.get("/subscription_lists"))["data"]
    seed.default_list = next(lst["id"] for lst in lists if lst["attributes"]["is_default"])
    seed.kept_lists = [make_list(api, "Customers"), make_list(api, "Newsletter")]
    seed.doomed_lists = [make_list(api, "Old promo")]
    add_subscribers(
        api,
        seed.kept_lists[0],
        [
            {"email": "ann@example.com", "first_name": "Ann", "custom_fields": [{"plan": "gold"}]},
            {"email": "bob@example.com", "last_name": "Stone", "custom_fields": [{"plan": "tin"}]},
        ],
    )
    add_subscribers(api, seed.kept_lists[1], [{"email": "cyd@example.com"}])
    add_subscribers(api, seed.doomed_lists[0], [{"email": "dee@example.com"}])
    people = ok(api.get("/subscribers"))["data"]
    for person in people:
        kept = person["attributes"]["email"] != "dee@example.com"
        (seed.kept_subscribers if kept else seed.doomed_subscribers).append(person["id"])
    subscriptions = ok(api.get("/subscriptions"))["data"]
    seed.subscriptions = [s["uuid"] for s in subscriptions]
    seed.subscriber_numbers = sorted({s["subscriber_id"] for s in subscriptions})
    segment = {
        "dynamic_list": {
            "name": "Gold",
            "filters": [[{"field": "plan", "op": "is", "terms": ["gold"]}]],
        }
    }
    seed.segments = [ok(api.post("/dynamic_lists", segment))["data"]["id"]]

    sent = make_mailing(api, subject="News for {{ first_name | default('you') }}")
    seed.kept_mailings = [sent, make_mailing(api, subject="Drip step")]
    seed.doomed_mailings = [make_mailing(api, subject="Draft one"), make_mailing(api, "Draft two")]
    send(api, sent, seed.kept_lists[0])
    for _ in range(3):
        run_tick()
        manual_clock.advance(timedelta(seconds=3))
    run_tick()
    (ann,) = to(smtp_server.messages, "ann@example.com")
    _open_and_click(client, html_of(ann))
    seed.sends = [s["id"] for s in ok(api.get("/campaign_mailing_sends"))["data"]]
    assert seed.sends
    seed.html_ids = [1, 2]

    steps = chain(node("t", "trigger"), node("a", "email", campaign_mailing_id=seed.mailings[1]))
    seed.drips = [create_drip(api, seed.kept_lists[1], steps, name="Welcome")]
    return seed


# --- real ids in generated requests ----------------------------------------------------------


def _maybe(value: Any, real: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A real value, or the generated one."""
    return st.one_of(real, st.just(value))


def _some(ids: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(ids), min_size=1, max_size=3, unique=True)


def _documented_fields(node: Any) -> Iterator[str]:
    if isinstance(node, list):
        for item in node:
            yield from _documented_fields(item)
    elif isinstance(node, dict):
        yield from node.get("properties", {})
        for value in node.values():
            yield from _documented_fields(value)


DOCUMENTED_FIELDS = frozenset(
    _documented_fields(yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))["components"])
)


def _path_ids(seed: Rows, method: str, path: str) -> list[str]:
    deleting = method == "DELETE"
    if path.startswith("/subscribers/"):
        return seed.kept_subscribers
    if path.startswith("/subscription_lists/"):
        return [seed.default_list, *(seed.doomed_lists if deleting else seed.kept_lists)]
    if path.startswith("/subscriptions/"):
        return seed.subscriptions
    if path.startswith("/campaign_mailings/"):
        return seed.mailings
    if path.startswith("/drip_campaigns/"):
        return seed.drips
    return []


QUERY_IDS: dict[str, Callable[[Rows], st.SearchStrategy[Any]]] = {
    "campaign_mailing_send_id": lambda seed: st.sampled_from(seed.sends),
    "campaign_mailing_id": lambda seed: st.sampled_from(seed.mailings),
    "subscription_list_id": lambda seed: st.sampled_from(seed.lists),
    "subscriber_ids": lambda seed: _some(seed.doomed_subscribers).map(",".join),
    "html_id": lambda seed: st.sampled_from(seed.html_ids),
    "to_email": lambda seed: FRESH_EMAILS,
}


def _real_body(seed: Rows, path: str, body: Any) -> st.SearchStrategy[Any]:
    """The body as generated, with ids (and addresses) sometimes swapped for real ones."""
    if isinstance(body, dict) and set(body) - DOCUMENTED_FIELDS:
        # Fields the document does not name are allowed by it and refused by Dripstone (422,
        # documented): half the time, leave them out so that the request reaches the handler.
        known = {key: value for key, value in body.items() if key in DOCUMENTED_FIELDS}
        return st.one_of(_real_body(seed, path, known), _fields(seed, path, body))
    return _fields(seed, path, body)


def _fields(seed: Rows, path: str, body: Any) -> st.SearchStrategy[Any]:
    if isinstance(body, list) and len(body) <= 20:
        return st.tuples(*(_real_body(seed, path, item) for item in body)).map(list)
    if not isinstance(body, dict):
        return st.just(body)
    sources = seed.segments if "dynamic_bulk" in path else seed.lists
    parts: dict[Any, st.SearchStrategy[Any]] = {}
    for key, value in body.items():
        if key in ("subscriber_ids", "except_ids") and isinstance(value, list):
            parts[key] = _maybe(value, _some(seed.kept_subscribers))
        elif key == "subscription_list_ids" and isinstance(value, list):
            parts[key] = _maybe(value, _some(seed.lists))
        elif key == "campaign_mailing_ids" and isinstance(value, list):
            parts[key] = _maybe(value, _some(seed.mailings))
        elif key == "campaign_mailing_id" and isinstance(value, str):
            parts[key] = _maybe(value, st.sampled_from(seed.mailings))
        elif key == "from_subscription_list_id" and isinstance(value, str):
            parts[key] = _maybe(value, st.sampled_from(sources))
        elif key == "subscription_list_id" and isinstance(value, str):
            parts[key] = _maybe(value, st.sampled_from(seed.lists))
        elif key == "dynamic_list_id" and isinstance(value, str):
            parts[key] = _maybe(value, st.sampled_from(seed.segments))
        elif key == "subscriber_id" and isinstance(value, int) and not isinstance(value, bool):
            parts[key] = _maybe(value, st.sampled_from(seed.subscriber_numbers))
        elif key in ("email", "sender_email", "from_email") and isinstance(value, str):
            parts[key] = _maybe(value, FRESH_EMAILS)
        elif key == "phone_number" and isinstance(value, str):
            parts[key] = _maybe(value, PHONES)
        elif key in ("first_name", "last_name", "name", "subject") and isinstance(value, str):
            parts[key] = _maybe(value, NAMES)
        elif key == "custom_fields" and isinstance(value, list):
            parts[key] = _maybe(value, st.just([{"plan": "gold"}]))
        else:
            parts[key] = _real_body(seed, path, value)
    return st.fixed_dictionaries(parts)


def _use_real_ids(schema: schemathesis.BaseSchema, seed: Rows) -> None:
    def operation_of(context: schemathesis.HookContext) -> tuple[str, str]:
        assert context.operation is not None
        return context.operation.method.upper(), context.operation.path

    @schema.hook
    def flatmap_path_parameters(
        context: schemathesis.HookContext, path_parameters: dict[str, Any]
    ) -> st.SearchStrategy[dict[str, Any]]:
        real = _path_ids(seed, *operation_of(context))
        parts = {
            name: _maybe(value, st.sampled_from(real)) if real else st.just(value)
            for name, value in (path_parameters or {}).items()
        }
        return st.fixed_dictionaries(parts)

    @schema.hook
    def flatmap_query(
        context: schemathesis.HookContext, query: dict[str, Any]
    ) -> st.SearchStrategy[dict[str, Any]]:
        if not isinstance(query, dict):
            return st.just(query)
        parts = {
            name: _maybe(value, QUERY_IDS[name](seed)) if name in QUERY_IDS else st.just(value)
            for name, value in query.items()
        }
        return st.fixed_dictionaries(parts)

    @schema.hook
    def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
        return _real_body(seed, operation_of(context)[1], body)


# --- the run ---------------------------------------------------------------------------------


@pytest.fixture
def paubox_schema(
    request: pytest.FixtureRequest, marketing: Api, rows: Rows
) -> Iterator[schemathesis.BaseSchema]:
    label_node_for_schemathesis(request)
    config = bounded_config(
        marketing.key, mode="positive", max_examples=MAX_EXAMPLES, deterministic=DETERMINISTIC
    )
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    schema = schemathesis.openapi.from_dict(document, config=config)
    schema.app = marketing.client.app
    _use_real_ids(schema, rows)
    yield schema
    lists = ok(marketing.get("/subscription_lists"))["data"]
    assert [lst["id"] for lst in lists if lst["attributes"]["is_default"]] == [rows.default_list]
    for subscriber_id in rows.kept_subscribers:
        assert marketing.get(f"/subscribers/{subscriber_id}").status_code == 200


schema = schemathesis.pytest.from_fixture("paubox_schema")


@pytest.mark.slow
@schema.parametrize()
def test_the_server_answers_as_paubox_documents(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(checks=CHECKS)
