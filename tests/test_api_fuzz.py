"""Schemathesis over the app's own OpenAPI document, in-process, as a real account.

Every operation under /v1/orca/acme (the same handlers as under /v1/marketing, documented
alike: tests/test_openapi.py) is fuzzed (explicit examples, coverage cases, then positive
and negative generated data) against a real database seeded with subscribers, lists,
segments, subscriptions, a finished job and a campaign send. Path parameters, id-bearing
query parameters and request bodies take real ids some of the time, so the handlers behind a
found resource run too, not only their 404s. Every answer must be no 5xx, have a documented
status code and content type, and match the schema documented for that status.

The run is bounded (MAX_EXAMPLES generated cases per operation) and derandomized, so CI sees
the same cases every time. For a deeper local hunt:
DRIPSTONE_FUZZ_EXAMPLES=200 DRIPSTONE_FUZZ_RANDOM=1 pytest tests/test_api_fuzz.py
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Api
from tests.fuzzing import bounded_config, label_node_for_schemathesis

MAX_EXAMPLES = int(os.environ.get("DRIPSTONE_FUZZ_EXAMPLES", "25"))
DETERMINISTIC = not os.environ.get("DRIPSTONE_FUZZ_RANDOM")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Values the API accepts, which random text rarely is: new addresses, real phone numbers.
FRESH_EMAILS = st.integers(min_value=0, max_value=10**9).map(lambda n: f"fuzz{n}@example.com")
PHONES = st.sampled_from(["+14155550123", "+442079460958", "+4722334455"])
# Ids that generated text seldom is: with a NUL (PostgreSQL refuses it), nearly a UUID.
ODD_IDS = ["a\x00b", "00000000-0000-0000-0000-00000000000g"]
LINKED_HTML = '<p><a href="https://a.example.com/">A</a> <a href="https://b.example.com/">B</a></p>'


@dataclass
class Seeded:
    """Real ids in the `acme` account. `kept_*` are never fed to a delete; `doomed_*` are."""

    default_list: str = ""
    kept_lists: list[str] = field(default_factory=list)
    doomed_lists: list[str] = field(default_factory=list)
    kept_subscribers: list[str] = field(default_factory=list)
    doomed_subscribers: list[str] = field(default_factory=list)
    subscriber_numbers: list[int] = field(default_factory=list)
    subscriptions: list[str] = field(default_factory=list)
    kept_segments: list[str] = field(default_factory=list)
    doomed_segments: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    mailings: list[str] = field(default_factory=list)
    sends: list[str] = field(default_factory=list)

    @property
    def lists(self) -> list[str]:
        return [self.default_list, *self.kept_lists]


def _data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert "data" in body, response.text
    return body["data"]


@pytest.fixture
def seeded(api: Api) -> Seeded:
    """Lists, subscribers (with custom fields, on lists), segments and a finished job."""
    seed = Seeded()
    lists = _data(api.get("/subscription_lists"))
    seed.default_list = next(lst["id"] for lst in lists if lst["attributes"]["is_default"])
    for name in ("Customers", "Newsletter"):
        seed.kept_lists.append(_data(api.post("/subscription_lists", {"name": name}))["id"])
    for name in ("Old promo", "Old event"):
        seed.doomed_lists.append(_data(api.post("/subscription_lists", {"name": name}))["id"])
    people = [
        ("ann@example.com", "Ann", "Lee", seed.kept_lists[0]),
        ("bob@example.com", "Bob", "Stone", seed.kept_lists[1]),
        ("cyd@example.com", None, None, None),
    ]
    for email, first, last, list_id in people:
        fields = {"email": email, "first_name": first, "last_name": last}
        body: dict[str, Any] = {"subscriber": {**fields, "custom_fields": [{"city": "Oslo"}]}}
        if list_id:
            body["subscription_list_id"] = list_id
        seed.kept_subscribers.append(_data(api.post("/subscribers", body))["id"])
    for email in ("dee@example.com", "eve@example.com"):
        body = {"subscriber": {"email": email}, "subscription_list_id": seed.doomed_lists[0]}
        seed.doomed_subscribers.append(_data(api.post("/subscribers", body))["id"])
    subscriptions = _data(api.get("/subscriptions"))
    seed.subscriptions = [s["uuid"] for s in subscriptions]
    seed.subscriber_numbers = sorted({s["subscriber_id"] for s in subscriptions})
    oslo = [[{"field": "city", "op": "is", "terms": ["Oslo"]}]]
    for name, list_id in (("Oslo customers", seed.kept_lists[0]), ("Oslo", None)):
        segment = {"dynamic_list": {"name": name, "subscription_list_id": list_id, "filters": oslo}}
        seed.kept_segments.append(_data(api.post("/dynamic_lists", segment))["id"])
    scratch = {"dynamic_list": {"name": "Scratch"}}
    seed.doomed_segments.append(_data(api.post("/dynamic_lists", scratch))["id"])
    select_all = {"from_subscription_list_id": seed.kept_lists[0]}
    seed.jobs.append(_data(api.post("/subscriptions/bulk_global_subscribe", select_all))["jid"])
    mailing = {"campaign_mailing": {"subject": "Fuzzed", "html_part": LINKED_HTML}}
    seed.mailings.append(_data(api.post("/campaign_mailings", mailing))["id"])
    started = {
        "campaign_mailing_id": seed.mailings[0],
        "campaign_mailing_send": {
            "sender_email": "owner@example.com",
            "subscription_list_id": seed.kept_lists[0],
        },
    }
    seed.sends.append(
        _data(api.post("/campaign_mailing_sends", started))["campaign_mailing_send_id"]
    )
    return seed


# --- real ids in generated requests ----------------------------------------------------------


def _maybe(value: Any, real: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The generated value, or a real one."""
    return st.one_of(st.just(value), real)


def _some(ids: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(ids), min_size=1, max_size=3, unique=True)


def _path_ids(seed: Seeded, method: str, path: str) -> dict[str, list[str]]:
    """Real values for the path parameters of one operation."""
    deleting = method == "DELETE"
    if path.endswith("/subscribers/{id}"):
        return {"id": seed.kept_subscribers}
    if path.endswith("/subscription_lists/{id}"):
        # The default list is always a candidate: renaming or deleting it must answer 422.
        return {"id": [seed.default_list, *(seed.doomed_lists if deleting else seed.kept_lists)]}
    if path.endswith("/subscriptions/{uuid}"):
        return {"uuid": seed.subscriptions}
    if path.endswith("/dynamic_lists/{id}"):
        return {"id": seed.doomed_segments if deleting else seed.kept_segments}
    if path.endswith("/jobs/{jid}"):
        return {"jid": seed.jobs}
    return {}


def _real_body(seed: Seeded, path: str, body: Any) -> st.SearchStrategy[Any]:
    """The body as generated, with ids (and addresses) sometimes swapped for real ones."""
    if isinstance(body, list) and len(body) <= 20:
        return st.tuples(*(_real_body(seed, path, item) for item in body)).map(list)
    if not isinstance(body, dict):
        return st.just(body)
    sources = seed.kept_segments if "dynamic_bulk" in path else seed.lists
    parts: dict[Any, st.SearchStrategy[Any]] = {}
    for key, value in body.items():
        if key in ("subscriber_ids", "except_ids") and isinstance(value, list):
            parts[key] = _maybe(value, _some(seed.kept_subscribers))
        elif key == "subscription_list_ids" and isinstance(value, list):
            parts[key] = _maybe(value, _some(seed.lists))
        elif key == "from_subscription_list_id" and isinstance(value, str):
            parts[key] = _maybe(value, st.sampled_from(sources))
        elif key == "subscription_list_id" and isinstance(value, str):
            parts[key] = _maybe(value, st.sampled_from(seed.lists))
        elif key == "subscriber_id" and isinstance(value, int) and not isinstance(value, bool):
            parts[key] = _maybe(value, st.sampled_from(seed.subscriber_numbers))
        elif key == "email" and isinstance(value, str):
            parts[key] = _maybe(value, FRESH_EMAILS)
        elif key == "phone_number" and isinstance(value, str):
            parts[key] = _maybe(value, PHONES)
        else:
            parts[key] = _real_body(seed, path, value)
    return st.fixed_dictionaries(parts)


def _use_real_ids(schema: schemathesis.BaseSchema, seed: Seeded) -> None:
    """Hooks (on this schema only) that draw seeded ids into paths, queries and bodies."""

    def operation_of(context: schemathesis.HookContext) -> tuple[str, str]:
        assert context.operation is not None
        return context.operation.method.upper(), context.operation.path

    @schema.hook
    def flatmap_path_parameters(
        context: schemathesis.HookContext, path_parameters: dict[str, Any]
    ) -> st.SearchStrategy[dict[str, Any]]:
        real = _path_ids(seed, *operation_of(context))
        parts = {
            name: _maybe(value, st.sampled_from([*real.get(name, []), *ODD_IDS]))
            for name, value in (path_parameters or {}).items()
        }
        return st.fixed_dictionaries(parts)

    @schema.hook
    def flatmap_query(
        context: schemathesis.HookContext, query: dict[str, Any]
    ) -> st.SearchStrategy[dict[str, Any]]:
        if not isinstance(query, dict):
            return st.just(query)
        parts: dict[str, st.SearchStrategy[Any]] = {}
        for name, value in query.items():
            if name == "subscription_list_id":
                parts[name] = _maybe(value, st.sampled_from(seed.lists))
            elif name == "subscriber_ids":
                parts[name] = _maybe(value, _some(seed.doomed_subscribers).map(",".join))
            elif name == "campaign_mailing_send_id":
                parts[name] = _maybe(value, st.sampled_from(seed.sends))
            elif name == "campaign_mailing_id":
                parts[name] = _maybe(value, st.sampled_from(seed.mailings))
            elif name == "html_id":
                parts[name] = _maybe(value, st.sampled_from([1, 2]))
            else:
                parts[name] = st.just(value)
        return st.fixed_dictionaries(parts)

    @schema.hook
    def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
        return _real_body(seed, operation_of(context)[1], body)


# --- the run ---------------------------------------------------------------------------------


# The operations are fuzzed a resource (the path's first part after the account) at a time,
# each resource a test of its own with its own seeded database, so that xdist workers share
# the run instead of one worker carrying all of it. Every operation is in one of them:
# test_every_operation_is_fuzzed_under_one_of_the_resources.
RESOURCES = (
    "subscribers",
    "subscribers_bulk_create",
    "subscribers_bulk_delete",
    "subscriber_custom_field_types",
    "subscribers_import",
    "subscribers_uploads",
    "subscription_lists",
    "subscriptions",
    "dynamic_lists",
    "campaign_mailings",
    "campaign_mailings_bulk_delete",
    "campaign_mailing_sends",
    "campaign_mailing_schedules",
    "drip_campaigns",
    "jobs",
    "analytics",
    "tracking_links",
    "audit_events",
)
ORCA = "/v1/orca/{username}/"


@pytest.fixture
def fuzzed_resource(request: pytest.FixtureRequest) -> str:
    resource: str = request.param
    return resource


@pytest.fixture
def fuzz_schema(
    request: pytest.FixtureRequest, api: Api, seeded: Seeded, fuzzed_resource: str
) -> Iterator[schemathesis.BaseSchema]:
    """The app's own OpenAPI document, called in-process as `acme` with its key: the
    operations of `fuzzed_resource` (the others are turned off)."""
    label_node_for_schemathesis(request)
    config = bounded_config(
        api.key,
        mode="all",
        max_examples=MAX_EXAMPLES,
        deterministic=DETERMINISTIC,
        # The orca copies of the routes reach the same handlers, as the key's account.
        parameters={"path.username": api.username},
        operations=[
            {
                "exclude-path-regex": f"^{re.escape(ORCA + fuzzed_resource)}(/|$)",
                "enabled": False,
            }
        ],
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app, config=config)
    _use_real_ids(schema, seeded)
    yield schema
    # Whatever the examples did, the account is intact: its default list, the kept rows.
    lists = _data(api.get("/subscription_lists"))
    assert [lst["id"] for lst in lists if lst["attributes"]["is_default"]] == [seeded.default_list]
    for subscriber_id in seeded.kept_subscribers:
        assert api.get(f"/subscribers/{subscriber_id}").status_code == 200


# The API only (not /healthz), under one base path: the other reaches the same handlers and
# is documented alike (tests/test_openapi.py). The orca path adds its username check. Filters
# go here: `from_fixture` drops the fixture schema's own.
schema = schemathesis.pytest.from_fixture("fuzz_schema").include(path_regex=r"^/v1/orca/")


@pytest.mark.slow
@pytest.mark.parametrize("fuzzed_resource", RESOURCES, indirect=True)
@schema.parametrize()
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(checks=CHECKS)


def test_every_operation_is_fuzzed_under_one_of_the_resources(shared_app: FastAPI) -> None:
    paths = [path for path in shared_app.openapi()["paths"] if path.startswith("/v1/orca/")]
    assert paths
    unfuzzed = [path for path in paths if path.removeprefix(ORCA).split("/")[0] not in RESOURCES]
    assert unfuzzed == []


# --- what the fuzzing found, pinned ----------------------------------------------------------


def test_a_duplicate_list_name_with_non_ascii_capitals_answers_422(api: Api) -> None:
    """SQLite's lower() leaves non-ASCII letters alone, so the service's case-insensitive
    name check missed this clash and the unique index refused the insert: a 500."""
    assert api.post("/subscription_lists", {"name": "Ãrhus"}).status_code == 200
    again = api.post("/subscription_lists", {"name": "Ãrhus"})
    assert again.status_code == 422, again.text
    assert again.json()["code"] == "conflict"


def test_validation_messages_name_the_body_and_drop_pydantic_prefixes(api: Api) -> None:
    no_name = api.post("/subscription_lists", {})
    assert no_name.status_code == 422
    assert no_name.json()["error"].startswith("body: ")
    assert "Value error" not in no_name.json()["error"]
    # The errors-list quirk of POST /subscriptions: every message names its field.
    assert api.post("/subscriptions").json() == {"errors": ["body: Field required"]}
    assert api.post("/subscriptions", {}).json() == {"errors": ["subscription: Field required"]}


def test_a_body_that_is_not_utf8_is_malformed_json(api: Api) -> None:
    answer = api.post(
        "/subscribers",
        content=b'{"subscriber": {"email": "\xff@example.com"}}',
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "malformed_json"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(
            b'{"subscriber": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "nested too deeply",
            id="deep",
        ),
        pytest.param(
            b'{"subscriber": {"email": ' + b"1" * 5000 + b"}}",
            "holds an integer longer than 4,300 digits",
            id="long-integer",
        ),
        pytest.param(b'{"subscriber": ', "not valid JSON", id="cut-short"),
    ],
)
def test_a_body_json_cannot_read_says_why(api: Api, body: bytes, reason: str) -> None:
    answer = api.post("/subscribers", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "malformed_json"
    assert answer.json()["error"] == f"the request body is {reason}"
