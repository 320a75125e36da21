"""The generated OpenAPI document agrees with the API contract (the Paubox field names)."""

from __future__ import annotations

from typing import Any

import pytest

from dripstone.app import create_app
from dripstone.config import load_settings
from tests.conftest import SECRET

Json = dict[str, Any]

ORCA = "/v1/orca/{username}"
MARKETING = "/v1/marketing"
BASES = (ORCA, MARKETING)

# Subscribers, Subscription lists and Subscriptions sections of the reference, then the
# extensions implemented so far.
ENDPOINTS: dict[str, set[str]] = {
    "/subscribers": {"get", "post"},
    "/subscribers/{id}": {"get", "put", "patch"},
    "/subscribers_bulk_create": {"post"},
    "/subscribers_bulk_delete": {"delete"},
    "/subscription_lists": {"get", "post"},
    "/subscription_lists/{id}": {"put", "patch", "delete"},
    "/subscriptions": {"get", "post"},
    "/subscriptions/{uuid}": {"get", "delete"},
    "/subscriptions/subscribe": {"post"},
    "/subscriptions/unsubscribe": {"post"},
    "/subscriptions/bulk_global_subscribe": {"post"},
    "/subscriptions/bulk_global_unsubscribe": {"post"},
    "/subscriptions/dynamic_bulk_subscribe": {"post"},
    "/subscriptions/dynamic_bulk_unsubscribe": {"post"},
    "/jobs/{jid}": {"get"},
    "/audit_events": {"get"},
    "/dynamic_lists": {"get", "post"},
    "/dynamic_lists/{id}": {"get", "put", "delete"},
    "/subscriber_custom_field_types": {"get", "post"},
    "/analytics/campaign_mailing_send_totals": {"get"},
    "/analytics/campaign_mailing_sends_table": {"get"},
    "/analytics/tracking_links_by_unique_link": {"get"},
    "/analytics/subscribers_by_tracking_link": {"get"},
    "/analytics/campaign_mailing_deliveries_table": {"get"},
    "/tracking_links": {"get"},
}
OPERATIONS = sorted((path, method) for path, methods in ENDPOINTS.items() for method in methods)

SUBSCRIBER = {"email", "first_name", "last_name", "unsubscribed"}
DETAILED = SUBSCRIBER | {
    "created_at",
    "updated_at",
    "custom_fields",
    "subscription_lists",
    "statistics",
}
CUSTOM_FIELD = {"subscriber_custom_field_type_id", "custom_field_name", "custom_field_value"}
MEMBERSHIP = {"id", "name", "unsubscribed"}
STATISTICS = {
    "deliveries",
    "delivered",
    "opened",
    "clicked",
    "soft_bounced",
    "hard_bounced",
    "unsubscribed",
    "global_unsubscribed",
}
LIST = {"name", "is_default", "subscriber_count", "form_id"}
SUBSCRIPTION = {
    "id",
    "uuid",
    "subscription_list_id",
    "dynamic_list_id",
    "subscriber_id",
    "unsubscribed_at",
    "delete_at",
    "created_at",
    "updated_at",
}
JOB = {
    "kind",
    "state",
    "total",
    "done",
    "failed",
    "error",
    "created_at",
    "started_at",
    "finished_at",
}


@pytest.fixture(scope="module")
def doc(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Json:
    """The document of an app configured as the other tests' (built once per backend)."""
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("openapi"),
        database_url=database_url,
        queue_url="memory://",
        secret_key=SECRET,
    )
    document: Json = create_app(settings).openapi()
    return document


# --- walking the document, $refs resolved ---------------------------------------------------


def resolve(doc: Json, schema: Json) -> Json:
    """Follow `$ref`s (local ones, as FastAPI writes them) to the schema they name."""
    seen: set[str] = set()
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        assert ref not in seen, f"$ref cycle at {ref}"
        seen.add(ref)
        target: Any = doc
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        schema = target
    return schema


def variants(doc: Json, schema: Json) -> list[Json]:
    """The alternatives a value may take (anyOf/oneOf flattened), without `null`."""
    schema = resolve(doc, schema)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return [v for option in schema[key] for v in variants(doc, option)]
    if schema.get("type") == "null":
        return []
    return [schema]


def properties(doc: Json, schema: Json) -> dict[str, Json]:
    """Properties of an object schema (of every object alternative, merged)."""
    merged: dict[str, Json] = {}
    for variant in variants(doc, schema):
        for part in [variant, *variant.get("allOf", [])]:
            merged.update(resolve(doc, part).get("properties", {}))
    return merged


def at(doc: Json, schema: Json, *steps: str) -> Json:
    """The schema found by walking property names; `[]` steps into array items."""
    for step in steps:
        if step == "[]":
            arrays = [v for v in variants(doc, schema) if v.get("type") == "array"]
            assert arrays, f"expected an array, got {schema}"
            schema = arrays[0]["items"]
        else:
            props = properties(doc, schema)
            assert step in props, f"no property {step!r} among {sorted(props)}"
            schema = props[step]
    return resolve(doc, schema)


def required(doc: Json, schema: Json) -> set[str]:
    return {name for v in variants(doc, schema) for name in v.get("required", [])}


def types(doc: Json, schema: Json) -> set[str]:
    found: set[str] = set()
    for variant in variants(doc, schema):
        kind = variant.get("type")
        if isinstance(kind, list):
            found.update(kind)
        elif isinstance(kind, str):
            found.add(kind)
    return found


def formats(doc: Json, schema: Json) -> set[str | None]:
    return {variant.get("format") for variant in variants(doc, schema)}


def operation(doc: Json, path: str, method: str, base: str = MARKETING) -> Json:
    op: Json = doc["paths"][base + path][method]
    return op


def response(doc: Json, path: str, method: str, status: str = "200", base: str = MARKETING) -> Json:
    content = operation(doc, path, method, base)["responses"][status]["content"]
    schema: Json = content["application/json"]["schema"]
    return schema


def request_body(doc: Json, path: str, method: str) -> Json:
    body = operation(doc, path, method)["requestBody"]
    assert body["required"] is True
    schema: Json = body["content"]["application/json"]["schema"]
    return schema


def parameters(doc: Json, path: str, method: str, base: str = MARKETING) -> dict[str, Json]:
    return {p["name"]: p for p in operation(doc, path, method, base).get("parameters", [])}


def data_variant(doc: Json, schema: Json) -> Json:
    """Of a 200 answer that may also be a quirk (`errors`), the `data` alternative."""
    found = [v for v in variants(doc, schema) if "data" in v.get("properties", {})]
    assert found, f"no data alternative in {schema}"
    return found[0]


def resource(doc: Json, schema: Json, type_name: str, *, many: bool = False) -> Json:
    """The `data` resource of a success answer, checked JSON:API style; its attributes."""
    data = at(doc, data_variant(doc, schema), "data", *(["[]"] if many else []))
    assert {"id", "type", "attributes"} <= set(properties(doc, data))
    assert {"id", "attributes"} <= required(doc, data)
    kind = at(doc, data, "type")
    assert kind.get("const", (kind.get("enum") or [None])[0]) == type_name
    return at(doc, data, "attributes")


def assert_fields(doc: Json, schema: Json, fields: set[str]) -> None:
    props = set(properties(doc, schema))
    assert fields <= props, f"missing {sorted(fields - props)}"


# --- endpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize("base", BASES)
def test_every_endpoint_is_listed_under_both_base_paths(doc: Json, base: str) -> None:
    for path, methods in ENDPOINTS.items():
        assert base + path in doc["paths"], f"{base}{path} missing"
        listed = set(doc["paths"][base + path]) - {"parameters"}
        assert methods <= listed, f"{base}{path}: missing {sorted(methods - listed)}"


def test_both_base_paths_serve_the_same_operations(doc: Json) -> None:
    def under(base: str) -> set[tuple[str, str]]:
        return {
            (path.removeprefix(base), method)
            for path, methods in doc["paths"].items()
            if path.startswith(base + "/")
            for method in methods
        }

    assert under(ORCA) == under(MARKETING)
    assert {(p, m) for p, m in OPERATIONS} <= under(MARKETING)


def _untitled(value: Any) -> Any:
    """`value` without the schema titles FastAPI derives from the route's path."""
    if isinstance(value, dict):
        return {
            k: _untitled(v) for k, v in value.items() if not (k == "title" and isinstance(v, str))
        }
    if isinstance(value, list):
        return [_untitled(item) for item in value]
    return value


def test_both_base_paths_document_each_operation_alike(doc: Json) -> None:
    """Why fuzzing one base path is enough (tests/test_api_fuzz.py): both reach the same
    handlers, and each operation's parameters, body and answers are documented alike, apart
    from the username, the operation id and the titles derived from the path."""

    def alike(op: Json) -> Json:
        kept = {key: value for key, value in op.items() if key != "operationId"}
        kept["parameters"] = [p for p in op.get("parameters", []) if p["name"] != "username"]
        return _untitled(kept)  # type: ignore[no-any-return]

    compared = 0
    for path, methods in doc["paths"].items():
        if path.startswith(ORCA + "/"):
            twins = doc["paths"][MARKETING + path.removeprefix(ORCA)]
            for method, op in methods.items():
                assert alike(op) == alike(twins[method]), f"{method} {path}"
                compared += 1
    assert compared >= len(OPERATIONS)


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_the_username_is_a_path_parameter_of_the_orca_paths_only(
    doc: Json, path: str, method: str
) -> None:
    username = parameters(doc, path, method, ORCA)["username"]
    assert username["in"] == "path"
    assert username["required"] is True
    assert types(doc, username["schema"]) == {"string"}
    assert "username" not in parameters(doc, path, method, MARKETING)


def test_operation_ids_are_unique(doc: Json) -> None:
    ids = [
        op["operationId"]
        for methods in doc["paths"].values()
        for method, op in methods.items()
        if method != "parameters"
    ]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
@pytest.mark.parametrize("base", BASES)
def test_operations_need_the_authorization_header(
    doc: Json, base: str, path: str, method: str
) -> None:
    schemes = doc["components"]["securitySchemes"]
    header_schemes = {
        name
        for name, scheme in schemes.items()
        if scheme["type"] == "apiKey"
        and scheme["in"] == "header"
        and scheme["name"].lower() == "authorization"
    }
    assert header_schemes, schemes
    security = operation(doc, path, method, base)["security"]
    assert any(set(requirement) & header_schemes for requirement in security), security


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
@pytest.mark.parametrize("status", ["400", "401", "404", "413", "422"])
def test_errors_are_documented_with_the_error_envelope(
    doc: Json, path: str, method: str, status: str
) -> None:
    envelope = response(doc, path, method, status)
    assert_fields(doc, envelope, {"error", "code", "details"})
    assert {"error", "code"} <= required(doc, envelope)
    assert types(doc, at(doc, envelope, "error")) == {"string"}
    assert types(doc, at(doc, envelope, "details")) == {"object"}


def test_the_healthcheck_is_outside_the_api(doc: Json) -> None:
    assert "security" not in doc["paths"]["/healthz"]["get"]


# --- subscribers -------------------------------------------------------------------------------


def test_subscriber_list_query_and_attributes(doc: Json) -> None:
    params = parameters(doc, "/subscribers", "get")
    assert {"items", "page", "search", "order_by", "order", "subscription_list_id"} <= set(params)
    assert all(p["in"] == "query" and not p.get("required") for p in params.values())
    items = resolve(doc, params["items"]["schema"])
    assert (items["minimum"], items["maximum"], items["default"]) == (1, 1000, 50)
    page = resolve(doc, params["page"]["schema"])
    assert (page["minimum"], page["default"]) == (1, 1)
    order_by = resolve(doc, params["order_by"]["schema"])
    assert set(order_by["enum"]) == {"first_name", "last_name", "email", "created_at", "updated_at"}
    assert order_by["default"] == "created_at"
    order = resolve(doc, params["order"]["schema"])
    assert (set(order["enum"]), order["default"]) == ({"asc", "desc"}, "desc")

    attributes = resource(doc, response(doc, "/subscribers", "get"), "subscriber", many=True)
    assert_fields(doc, attributes, SUBSCRIBER)
    assert types(doc, at(doc, attributes, "unsubscribed")) == {"boolean"}


def test_create_subscriber_body_and_answer(doc: Json) -> None:
    body = request_body(doc, "/subscribers", "post")
    assert_fields(doc, body, {"subscriber", "subscription_list_id"})
    assert "subscriber" in required(doc, body)
    fields = at(doc, body, "subscriber")
    assert_fields(
        doc, fields, {"email", "phone_number", "first_name", "last_name", "custom_fields"}
    )
    assert formats(doc, at(doc, fields, "email")) == {"email"}
    custom = at(doc, fields, "custom_fields", "[]")
    assert types(doc, custom) == {"object"}
    assert_fields(
        doc, resource(doc, response(doc, "/subscribers", "post"), "subscriber"), SUBSCRIBER
    )


def test_get_subscriber_is_the_detailed_form(doc: Json) -> None:
    params = parameters(doc, "/subscribers/{id}", "get")
    assert params["id"]["in"] == "path"
    assert types(doc, params["with_stats"]["schema"]) == {"boolean"}
    attributes = resource(doc, response(doc, "/subscribers/{id}", "get"), "subscriber")
    assert_fields(doc, attributes, DETAILED)
    for name in ("created_at", "updated_at"):
        assert formats(doc, at(doc, attributes, name)) == {"date-time"}
    assert_fields(doc, at(doc, attributes, "custom_fields", "[]"), CUSTOM_FIELD)
    assert_fields(doc, at(doc, attributes, "subscription_lists", "[]"), MEMBERSHIP)
    statistics = at(doc, attributes, "statistics")
    assert_fields(doc, statistics, STATISTICS)
    for name in STATISTICS:
        assert types(doc, at(doc, statistics, name)) == {"integer"}


@pytest.mark.parametrize("method", ["put", "patch"])
def test_update_subscriber(doc: Json, method: str) -> None:
    body = request_body(doc, "/subscribers/{id}", method)
    assert_fields(
        doc, at(doc, body, "subscriber"), {"email", "phone_number", "first_name", "last_name"}
    )
    answer = response(doc, "/subscribers/{id}", method)
    assert_fields(doc, resource(doc, answer, "subscriber"), SUBSCRIBER)


def test_bulk_create_and_delete_subscribers(doc: Json) -> None:
    body = request_body(doc, "/subscribers_bulk_create", "post")
    assert_fields(doc, body, {"subscribers", "subscription_list_id"})
    row = at(doc, body, "subscribers", "[]")
    assert_fields(doc, row, {"email", "first_name", "last_name", "custom_fields"})
    assert "email" in required(doc, row)
    assert formats(doc, at(doc, row, "email")) == {"email"}
    result = at(doc, response(doc, "/subscribers_bulk_create", "post"), "data")
    assert types(doc, at(doc, result, "num_subscribers_added")) == {"integer"}

    params = parameters(doc, "/subscribers_bulk_delete", "delete")
    assert params["subscriber_ids"]["in"] == "query"
    assert params["subscriber_ids"]["required"] is True
    assert not params["subscription_list_id"].get("required")
    assert properties(doc, response(doc, "/subscribers_bulk_delete", "delete")) == {}


# --- subscription lists ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/subscription_lists", "post"),
        ("/subscription_lists/{id}", "put"),
        ("/subscription_lists/{id}", "patch"),
    ],
)
def test_subscription_list_writes(doc: Json, path: str, method: str) -> None:
    assert "name" in properties(doc, request_body(doc, path, method))
    attributes = resource(doc, response(doc, path, method), "subscription_list")
    assert_fields(doc, attributes, LIST)


def test_subscription_list_reads_and_delete(doc: Json) -> None:
    answer = response(doc, "/subscription_lists", "get")
    attributes = resource(doc, answer, "subscription_list", many=True)
    assert_fields(doc, attributes, LIST)
    assert types(doc, at(doc, attributes, "is_default")) == {"boolean"}
    assert types(doc, at(doc, attributes, "subscriber_count")) == {"integer"}
    assert properties(doc, response(doc, "/subscription_lists/{id}", "delete")) == {}


# --- subscriptions -----------------------------------------------------------------------------


def _check_subscription_record(doc: Json, record: Json) -> None:
    assert_fields(doc, record, SUBSCRIPTION)
    assert types(doc, at(doc, record, "id")) == {"integer"}
    assert types(doc, at(doc, record, "subscriber_id")) == {"integer"}
    assert types(doc, at(doc, record, "uuid")) == {"string"}
    for name in ("unsubscribed_at", "delete_at", "created_at", "updated_at"):
        assert formats(doc, at(doc, record, name)) == {"date-time"}


@pytest.mark.parametrize(
    ("path", "method", "many"),
    [
        ("/subscriptions", "get", True),
        ("/subscriptions", "post", False),
        ("/subscriptions/{uuid}", "get", False),
        ("/subscriptions/{uuid}", "delete", False),
    ],
)
def test_subscription_records(doc: Json, path: str, method: str, many: bool) -> None:
    data = at(doc, data_variant(doc, response(doc, path, method)), "data")
    _check_subscription_record(doc, at(doc, data, "[]") if many else data)


def test_create_subscription_body_and_errors_quirk(doc: Json) -> None:
    body = at(doc, request_body(doc, "/subscriptions", "post"), "subscription")
    assert_fields(doc, body, {"subscription_list_id", "subscriber_id"})
    assert types(doc, at(doc, body, "subscriber_id")) == {"integer"}
    quirk = [
        v
        for v in variants(doc, response(doc, "/subscriptions", "post"))
        if "errors" in v.get("properties", {})
    ]
    assert quirk, "the 200 {errors: [...]} answer is not documented"
    errors = at(doc, quirk[0], "errors")
    assert types(doc, errors) == {"array"}
    assert types(doc, at(doc, errors, "[]")) == {"string"}


def _errors_string(doc: Json, schema: Json) -> None:
    quirk = [v for v in variants(doc, schema) if "errors" in v.get("properties", {})]
    assert quirk, "the 200 {errors: '...'} answer is not documented"
    assert types(doc, at(doc, quirk[0], "errors")) == {"string"}


@pytest.mark.parametrize("action", ["subscribe", "unsubscribe"])
def test_subscribe_and_unsubscribe(doc: Json, action: str) -> None:
    path = f"/subscriptions/{action}"
    body = request_body(doc, path, "post")
    assert_fields(doc, body, {"subscriber_ids", "subscription_list_ids"})
    assert "subscriber_ids" in required(doc, body)
    answer = response(doc, path, "post")
    assert_fields(doc, resource(doc, answer, "subscriber", many=True), DETAILED)
    _errors_string(doc, answer)


@pytest.mark.parametrize(
    "action",
    [
        "bulk_global_subscribe",
        "bulk_global_unsubscribe",
        "dynamic_bulk_subscribe",
        "dynamic_bulk_unsubscribe",
    ],
)
def test_bulk_subscription_changes(doc: Json, action: str) -> None:
    path = f"/subscriptions/{action}"
    body = request_body(doc, path, "post")
    assert_fields(
        doc,
        body,
        {"subscriber_ids", "from_subscription_list_id", "search", "filters", "except_ids"},
    )
    answer = response(doc, path, "post")
    datas = [at(doc, v, "data") for v in variants(doc, answer) if "data" in v.get("properties", {})]
    explicit = [d for d in datas if "array" in types(doc, d)]
    assert explicit, "the explicit-ids answer (a list of detailed subscribers) is missing"
    assert_fields(doc, at(doc, at(doc, explicit[0], "[]"), "attributes"), DETAILED)
    jobs = [d for d in datas if "jid" in properties(doc, d)]
    assert jobs, "the select-all answer ({data: {jid}}) is missing"
    _errors_string(doc, answer)


# --- extensions --------------------------------------------------------------------------------


def test_job_status(doc: Json) -> None:
    attributes = resource(doc, response(doc, "/jobs/{jid}", "get"), "job")
    assert_fields(doc, attributes, JOB)
    # "cancelled": a scheduled send cancelled before it began.
    assert set(at(doc, attributes, "state")["enum"]) == {
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    }


def test_audit_events_are_paged_resources_of_ids(doc: Json) -> None:
    attributes = resource(doc, response(doc, "/audit_events", "get"), "audit_event", many=True)
    assert_fields(
        doc,
        attributes,
        {"occurred_at", "actor_type", "actor", "action", "object_ids", "status", "request_id"},
    )
    assert set(at(doc, attributes, "actor_type")["enum"]) == {"api_key", "user"}
    assert {"items", "page"} <= set(parameters(doc, "/audit_events", "get"))


@pytest.mark.parametrize(
    ("path", "method", "many"),
    [
        ("/dynamic_lists", "get", True),
        ("/dynamic_lists", "post", False),
        ("/dynamic_lists/{id}", "get", False),
        ("/dynamic_lists/{id}", "put", False),
    ],
)
def test_dynamic_lists(doc: Json, path: str, method: str, many: bool) -> None:
    attributes = resource(doc, response(doc, path, method), "dynamic_list", many=many)
    assert_fields(doc, attributes, {"name", "subscription_list_id", "search", "filters"})
    condition = at(doc, attributes, "filters", "[]", "[]")
    assert_fields(doc, condition, {"field", "op", "terms"})
    if method in ("post", "put"):
        fields = at(doc, request_body(doc, path, method), "dynamic_list")
        assert_fields(doc, fields, {"name", "subscription_list_id", "search", "filters"})


def test_custom_field_types(doc: Json) -> None:
    for method, many in (("get", True), ("post", False)):
        answer = response(doc, "/subscriber_custom_field_types", method)
        attributes = resource(doc, answer, "subscriber_custom_field_type", many=many)
        assert_fields(doc, attributes, {"name", "created_at"})
    body = request_body(doc, "/subscriber_custom_field_types", "post")
    assert "name" in properties(doc, at(doc, body, "subscriber_custom_field_type"))


ANALYTICS_TOTALS = {
    "delivered",
    "viewed",
    "clicked",
    "bounced",
    "soft_bounced",
    "hard_bounced",
    "unsubscribed",
    "global_unsubscribed",
}
ANALYTICS_EXTENSIONS = {"sent", "human_viewed", "machine_viewed", "human_clicked", "bot_clicked"}


def test_analytics_answers(doc: Json) -> None:
    totals = at(doc, response(doc, "/analytics/campaign_mailing_send_totals", "get"), "data")
    assert_fields(doc, totals, ANALYTICS_TOTALS | ANALYTICS_EXTENSIONS)
    sends = response(doc, "/analytics/campaign_mailing_sends_table", "get")
    assert_fields(
        doc,
        at(doc, sends, "data", "[]"),
        {
            "id",
            "marketing_email_id",
            "campaign_mailing_id",
            "campaign_mailing_created_at",
            "sent_at",
            "subscription_list_name",
        },
    )
    links = at(doc, response(doc, "/analytics/tracking_links_by_unique_link", "get"), "data", "[]")
    assert_fields(doc, links, {"html_id", "target_url", "clicked", "human_clicked", "clicks"})
    assert types(doc, at(doc, links, "html_id")) == {"integer"}
    clickers = response(doc, "/analytics/subscribers_by_tracking_link", "get")
    attributes = resource(doc, clickers, "subscriber", many=True)
    assert_fields(doc, attributes, {"email", "first_name", "last_name", "custom_fields"})
    custom = at(doc, attributes, "custom_fields", "[]")
    assert set(properties(doc, custom)) == {"subscriber_custom_field_type_id", "value"}
    rows = response(doc, "/analytics/campaign_mailing_deliveries_table", "get")
    row = at(doc, rows, "data", "[]")
    assert_fields(
        doc,
        row,
        {"recipient", "created_at", "delivered", "viewed", "clicked", "bounced", "unsubscribed"},
    )
    assert types(doc, at(doc, row, "tracking_links")["additionalProperties"]) == {"string"}
    link = resource(doc, response(doc, "/tracking_links", "get"), "tracking_link", many=True)
    assert_fields(doc, link, {"target_url", "opened_at", "clicked", "campaign_mailing_delivery_id"})
    assert types(doc, at(doc, link, "opened_at")) == {"string"}  # absent, never null


@pytest.mark.parametrize(
    "path",
    ["/analytics/subscribers_by_tracking_link", "/analytics/campaign_mailing_deliveries_table"],
)
def test_the_exportable_tables_document_csv_beside_json(doc: Json, path: str) -> None:
    content = operation(doc, path, "get")["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/csv"}


def test_analytics_parameters(doc: Json) -> None:
    links = parameters(doc, "/tracking_links", "get")
    assert links["campaign_mailing_send_id"]["required"] is True
    assert "pattern" in resolve(doc, links["campaign_mailing_send_id"]["schema"])
    assert links["order"]["schema"]["default"] == "desc"
    assert links["order_by"]["schema"]["default"] == "created_at"
    assert links["items"]["required"] is False
    clickers = parameters(doc, "/analytics/subscribers_by_tracking_link", "get")
    assert clickers["html_id"]["required"] is True
    assert types(doc, clickers["html_id"]["schema"]) == {"integer"}
    table = parameters(doc, "/analytics/campaign_mailing_deliveries_table", "get")
    assert not table["campaign_mailing_send_id"]["required"]
    assert not table["campaign_mailing_id"]["required"]
    sends = parameters(doc, "/analytics/campaign_mailing_sends_table", "get")
    assert set(sends) >= {"search", "order_by", "order", "items", "page"}
