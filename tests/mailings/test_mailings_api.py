"""The campaign-mailing endpoints as a client sees them: saving (and its 200-errors quirk),
reading, listing, deleting, test emails, sends and scheduled sends."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dripstone.clock import ManualClock
from tests.conftest import Api
from tests.delivery.smtp_server import SmtpTestServer
from tests.mailings.helpers import (
    HTML,
    add_subscribers,
    html_of,
    job,
    make_list,
    make_mailing,
    ok,
    parsed,
    send,
    subscriber_id,
    text_of,
    to,
)
from tests.subscribers.helpers import assert_error, errors_string

Tick = Callable[[], None]

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
FOOTER_MARK = "<!-- dripstone:unsubscribe-footer -->"
FOOTER_END_MARK = "<!-- /dripstone:unsubscribe-footer -->"
BAD_TIME = {"errors": "Invalid time format provided, please use RFC3339 format."}
# What the manual clock says when a test starts.
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SINGLE_KEYS = {
    "subject",
    "default_subject",
    "template_type",
    "created_at",
    "updated_at",
    "form_data",
    "html_part",
    "text_part",
    "from",
    "from_name",
    "reply_to",
}
ZERO_COUNTS = {
    "sent_count": 0,
    "delivered_count": 0,
    "viewed_count": 0,
    "clicked_count": 0,
    "bounced_count": 0,
    "unsubscribed_count": 0,
}
SIMPLE_HTML = "<html><body><p>Big news inside</p></body></html>"


# --- helpers -----------------------------------------------------------------------------------


def create(api: Api, **fields: Any) -> Any:
    """POST /campaign_mailings with these fields, the raw response."""
    return api.post("/campaign_mailings", {"campaign_mailing": fields})


def attributes(api: Api, mailing_id: str, **params: Any) -> dict[str, Any]:
    data = ok(api.get(f"/campaign_mailings/{mailing_id}", params=params))["data"]
    assert data["id"] == mailing_id
    assert data["type"] == "campaign_mailing"
    result: dict[str, Any] = data["attributes"]
    return result


def listing(api: Api, **params: Any) -> list[dict[str, Any]]:
    body = ok(api.get("/campaign_mailings", params=params))
    assert set(body) == {"data"}
    result: list[dict[str, Any]] = body["data"]
    return result


def subjects(api: Api, **params: Any) -> list[str]:
    return [m["attributes"]["subject"] for m in listing(api, **params)]


def errors_of(response: Any) -> list[str]:
    """The 200 `{"errors": [...]}` answer of a refused save."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"errors"}, body
    assert isinstance(body["errors"], list)
    assert body["errors"]
    assert all(isinstance(e, str) for e in body["errors"])
    errors: list[str] = body["errors"]
    return errors


def footers(html: str) -> int:
    return html.count(FOOTER_MARK)


def sends(api: Api) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = ok(api.get("/campaign_mailing_sends"))["data"]
    return result


def assert_uuid(value: Any) -> None:
    assert isinstance(value, str)
    assert str(uuid.UUID(value)) == value


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def schedule(api: Api, send_at: str, **fields: Any) -> Any:
    body = {"send_at": send_at, "sender_email": "owner@example.com", **fields}
    return api.post("/campaign_mailing_schedules", body)


def finish_send(clock: ManualClock, run_tick: Tick) -> None:
    """Deliver what is due, then let the send's job see that every delivery is final."""
    run_tick()
    run_tick()
    clock.advance(timedelta(seconds=3))
    run_tick()


# --- create and read ---------------------------------------------------------------------------


def test_create_answers_only_the_new_id(api: Api) -> None:
    response = create(api, subject="Spring sale", html_part=SIMPLE_HTML)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"data"}
    assert set(body["data"]) == {"id"}
    assert_uuid(body["data"]["id"])
    assert subjects(api) == ["Spring sale"]


def test_get_returns_every_field_with_the_footer_and_a_derived_text(
    api: Api, manual_clock: ManualClock
) -> None:
    mailing_id = make_mailing(
        api,
        "Hello {{ first_name }}",
        default_subject="Hello friend",
        form_data={"blocks": [{"type": "text", "value": "Hi"}]},
        **{"from": "Shop@Example.com", "from_name": "The Shop", "reply_to": "help@example.com"},
    )
    found = attributes(api, mailing_id)
    assert set(found) >= SINGLE_KEYS
    assert set(found) <= {*SINGLE_KEYS, "image_data"}
    html, text = found.pop("html_part"), found.pop("text_part")
    found.pop("image_data", None)
    assert found == {
        "subject": "Hello {{ first_name }}",
        "default_subject": "Hello friend",
        "template_type": "quill",
        "created_at": "2026-01-05T09:00:00Z",
        "updated_at": "2026-01-05T09:00:00Z",
        # A string, as Paubox documents it: the JSON stored, as text.
        "form_data": '{"blocks":[{"type":"text","value":"Hi"}]}',
        "from": "shop@example.com",
        "from_name": "The Shop",
        "reply_to": "help@example.com",
    }
    # The HTML as written, with one footer block just before </body>.
    assert footers(html) == 1
    assert html.count(FOOTER_END_MARK) == 1
    before, _, after = html.partition(FOOTER_MARK)
    assert before == HTML.removesuffix("</body></html>")
    footer, _, rest = after.partition(FOOTER_END_MARK)
    assert rest == "</body></html>"
    assert "{{ unsubscribe_url }}" in footer
    assert "Unsubscribe" in footer
    # No text part was written: the one derived from the HTML shows its visible text.
    assert isinstance(text, str)
    assert 'Hi {{ first_name | default("there") }}, your plan is {{ custom.plan }}.' in text
    assert "[Sale](https://shop.example.com/sale)" in text
    assert "[Post](https://blog.example.com/post?id=1)" in text
    assert "[Unsubscribe]({{ unsubscribe_url }})" in text
    assert "<p>" not in text
    assert "color: #333" not in text


def test_a_text_part_as_written_is_kept(api: Api) -> None:
    mailing_id = make_mailing(api, "Plain too", text_part="Hi {{ first_name }}, read on.")
    found = attributes(api, mailing_id)
    assert found["text_part"] == "Hi {{ first_name }}, read on."
    assert footers(found["html_part"]) == 1


def test_a_text_only_mailing_has_no_html(api: Api) -> None:
    response = create(api, subject="Text only", text_part="Just words.")
    mailing_id = ok(response)["data"]["id"]
    found = attributes(api, mailing_id)
    assert found["html_part"] == ""  # a string, as Paubox documents it: empty, never null
    assert found["text_part"] == "Just words."


def test_a_fragment_without_body_gets_the_footer_at_the_end(api: Api) -> None:
    mailing_id = make_mailing(api, "Fragment", html_part="<p>Short note</p>")
    html = attributes(api, mailing_id)["html_part"]
    assert html.startswith("<p>Short note</p>" + FOOTER_MARK)
    assert html.endswith(FOOTER_END_MARK)
    assert footers(html) == 1


def test_template_type_defaults_to_quill_and_can_be_chosen(api: Api) -> None:
    default = make_mailing(api, "Default type")
    chosen = make_mailing(api, "Chosen type", template_type="html")
    assert attributes(api, default)["template_type"] == "quill"
    assert attributes(api, chosen)["template_type"] == "html"
    assert [m["attributes"]["template_type"] for m in listing(api)] == ["quill", "html"]


def test_image_data_is_returned_with_images_only(api: Api) -> None:
    images = {"header": {"url": "https://cdn.example.com/h.png", "width": 600}}
    mailing_id = make_mailing(api, "With images", image_data=images)
    # A string, as Paubox documents it: the JSON stored, as text.
    assert json.loads(attributes(api, mailing_id, with_images="true")["image_data"]) == images
    assert "image_data" not in attributes(api, mailing_id)
    assert "image_data" not in attributes(api, mailing_id, with_images="")


def test_image_data_is_absent_without_with_images(api: Api) -> None:
    mailing_id = make_mailing(api, "With images", image_data={"header": "h.png"})
    assert "image_data" not in attributes(api, mailing_id)


@pytest.mark.parametrize("value", ["maybe", "1", "false"])
def test_any_non_empty_with_images_turns_images_on(api: Api, value: str) -> None:
    """Paubox documents `with_images` as on for any non-empty value ("false" included)."""
    with_images = make_mailing(api, "With images", image_data={"header": "h.png"})
    without = make_mailing(api, "Without images")
    assert attributes(api, with_images, with_images=value)["image_data"] == '{"header":"h.png"}'
    assert attributes(api, without, with_images=value)["image_data"] == ""


# --- footers never stack -----------------------------------------------------------------------


def test_saving_again_never_stacks_footers(api: Api) -> None:
    mailing_id = make_mailing(api, "Footer once")
    first = attributes(api, mailing_id)
    assert footers(first["html_part"]) == 1

    # PUT with the same HTML, then PATCH without HTML: the stored HTML is saved again.
    body = {"campaign_mailing": {"subject": "Footer once", "html_part": HTML}}
    assert ok(api.put(f"/campaign_mailings/{mailing_id}", body)) == {"data": {"id": mailing_id}}
    patch = {"campaign_mailing": {"default_subject": "Once"}}
    assert ok(api.patch(f"/campaign_mailings/{mailing_id}", patch)) == {"data": {"id": mailing_id}}
    after_patch = attributes(api, mailing_id)
    assert footers(after_patch["html_part"]) == 1
    assert after_patch["html_part"] == first["html_part"]

    # An editor sends back the html_part it read, footer included.
    for method in ("PUT", "PATCH", "PUT"):
        current = attributes(api, mailing_id)["html_part"]
        response = api.request(
            method,
            f"/campaign_mailings/{mailing_id}",
            json={"campaign_mailing": {"html_part": current}},
        )
        assert ok(response) == {"data": {"id": mailing_id}}
    final = attributes(api, mailing_id)
    assert footers(final["html_part"]) == 1
    assert final["html_part"].count(FOOTER_END_MARK) == 1
    assert final["html_part"] == first["html_part"]
    assert final["text_part"].count("Unsubscribe") == 1
    assert final["text_part"] == first["text_part"]


def test_a_round_tripped_footer_does_not_stack_on_create_either(api: Api) -> None:
    source = attributes(api, make_mailing(api, "Original"))["html_part"]
    copy_id = make_mailing(api, "Copy", html_part=source)
    assert attributes(api, copy_id)["html_part"] == source


# --- updates -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_an_update_changes_only_the_fields_sent(
    api: Api, manual_clock: ManualClock, method: str
) -> None:
    mailing_id = make_mailing(
        api,
        "Weekly",
        default_subject="Your weekly news",
        text_part="Plain words",
        form_data={"v": 1},
        image_data={"logo": "a.png"},
        template_type="html",
        **{"from": "news@example.com", "from_name": "News", "reply_to": "reply@example.com"},
    )
    before = attributes(api, mailing_id, with_images="true")
    manual_clock.advance(timedelta(minutes=5))

    response = api.request(
        method,
        f"/campaign_mailings/{mailing_id}",
        json={"campaign_mailing": {"default_subject": "Fresh news"}},
    )
    assert ok(response) == {"data": {"id": mailing_id}}
    after = attributes(api, mailing_id, with_images="true")
    assert after == {
        **before,
        "default_subject": "Fresh news",
        "updated_at": "2026-01-05T09:05:00Z",
    }
    assert after["created_at"] == "2026-01-05T09:00:00Z"

    response = api.request(
        method,
        f"/campaign_mailings/{mailing_id}",
        json={"campaign_mailing": {"subject": "Weekly digest", "text_part": "New words"}},
    )
    assert ok(response) == {"data": {"id": mailing_id}}
    assert attributes(api, mailing_id, with_images="true") == {
        **after,
        "subject": "Weekly digest",
        "text_part": "New words",
    }
    assert subjects(api) == ["Weekly digest"]


def test_an_update_may_keep_its_own_subject(api: Api) -> None:
    mailing_id = make_mailing(api, "Same subject")
    body = {"campaign_mailing": {"subject": "Same subject", "html_part": "<p>New body</p>"}}
    assert ok(api.put(f"/campaign_mailings/{mailing_id}", body)) == {"data": {"id": mailing_id}}
    assert attributes(api, mailing_id)["html_part"].startswith("<p>New body</p>")


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
@pytest.mark.parametrize("mailing_id", [UNKNOWN_ID, "not-a-uuid"])
def test_updating_an_unknown_mailing_is_404(api: Api, method: str, mailing_id: str) -> None:
    response = api.request(
        method,
        f"/campaign_mailings/{mailing_id}",
        json={"campaign_mailing": {"subject": "Anything"}},
    )
    assert_error(response, 404, code="not_found")


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_another_accounts_mailing_cannot_be_updated(api: Api, other_api: Api, method: str) -> None:
    theirs = make_mailing(other_api, "Theirs")
    before = attributes(other_api, theirs)
    response = api.request(
        method, f"/campaign_mailings/{theirs}", json={"campaign_mailing": {"subject": "Mine now"}}
    )
    assert_error(response, 404, code="not_found")
    assert attributes(other_api, theirs) == before
    assert subjects(api) == []


# --- refusals: 200 with errors, nothing written ------------------------------------------------


def _starts_with(prefix: str) -> Callable[[list[str]], bool]:
    return lambda errors: len(errors) == 1 and errors[0].startswith(prefix)


def _exactly(*expected: str) -> Callable[[list[str]], bool]:
    return lambda errors: errors == list(expected)


REFUSED_CREATES = [
    pytest.param(
        {"campaign_mailing": {"html_part": SIMPLE_HTML}},
        _exactly("subject: is required"),
        id="missing-subject",
    ),
    pytest.param(
        {"campaign_mailing": {"subject": None, "html_part": SIMPLE_HTML}},
        _exactly("subject: is required"),
        id="null-subject",
    ),
    pytest.param(
        {"campaign_mailing": {"subject": "   ", "html_part": SIMPLE_HTML}},
        _starts_with("campaign_mailing.subject: "),
        id="blank-subject",
    ),
    pytest.param(
        {"campaign_mailing": {"subject": "Broken", "html_part": "<p>{% if %}</p>"}},
        _starts_with("html_part line 1: "),
        id="jinja-error-in-html",
    ),
    pytest.param(
        {"campaign_mailing": {"subject": "Broken", "html_part": "<p>\n{{ first_name </p>"}},
        _starts_with("html_part line 2: "),
        id="unclosed-tag-in-html-line-2",
    ),
    pytest.param(
        {"campaign_mailing": {"subject": "Hi {% if %}", "html_part": SIMPLE_HTML}},
        _starts_with("subject line 1: "),
        id="jinja-error-in-subject",
    ),
    pytest.param(
        {"campaign_mailing": {"subject": "Broken", "text_part": "Hi {{ }}"}},
        _starts_with("text_part line 1: "),
        id="jinja-error-in-text",
    ),
    pytest.param(
        {"campaign_mailing": {"subject": 123, "html_part": SIMPLE_HTML}},
        _exactly("campaign_mailing.subject: Input should be a valid string"),
        id="subject-number",
    ),
    pytest.param(
        {"campaign_mailing": {"subject": "Typed", "html_part": ["<p>a</p>"]}},
        _exactly("campaign_mailing.html_part: Input should be a valid string"),
        id="html-list",
    ),
    pytest.param(
        {"campaign_mailing": {"subject": "Typed", "html_part": SIMPLE_HTML, "colour": "red"}},
        _starts_with("campaign_mailing.colour: "),
        id="unknown-field",
    ),
    pytest.param(
        {"campaign_mailing": {"subject": "No parts"}},
        _exactly("html_part: a mailing needs an html_part or a text_part"),
        id="no-parts",
    ),
    pytest.param(
        {"campaign_mailing": {"default_subject": "Nothing"}},
        _exactly("subject: is required", "html_part: a mailing needs an html_part or a text_part"),
        id="every-problem-at-once",
    ),
    pytest.param(
        {"campaign_mailing": {"subject": "S", "html_part": SIMPLE_HTML, "from_name": "A\nBcc: b"}},
        _exactly("campaign_mailing.from_name: must not contain line breaks or control characters"),
        id="from-name-with-a-line-break",
    ),
    pytest.param({}, _exactly("campaign_mailing: Field required"), id="no-wrapper"),
    pytest.param(
        {"subject": "Unwrapped", "html_part": SIMPLE_HTML},
        _exactly(
            "campaign_mailing: Field required",
            "subject: Extra inputs are not permitted",
            "html_part: Extra inputs are not permitted",
        ),
        id="unwrapped",
    ),
]


@pytest.mark.parametrize(("body", "expected"), REFUSED_CREATES)
def test_a_refused_create_answers_200_with_errors_and_writes_nothing(
    api: Api, body: dict[str, Any], expected: Callable[[list[str]], bool]
) -> None:
    existing = make_mailing(api, "Existing")
    before = listing(api)
    errors = errors_of(api.post("/campaign_mailings", body))
    assert expected(errors), errors
    assert listing(api) == before
    assert [m["id"] for m in before] == [existing]


REFUSED_UPDATES = [
    pytest.param({"subject": None}, _exactly("subject: is required"), id="null-subject"),
    pytest.param(
        {"subject": "   "}, _starts_with("campaign_mailing.subject: "), id="blank-subject"
    ),
    pytest.param(
        {"html_part": "<p>{% if %}</p>"},
        _starts_with("html_part line 1: "),
        id="jinja-error-in-html",
    ),
    pytest.param(
        {"subject": "Hi {% if %}"}, _starts_with("subject line 1: "), id="jinja-error-in-subject"
    ),
    pytest.param(
        {"text_part": "Hi {{ }}"}, _starts_with("text_part line 1: "), id="jinja-error-in-text"
    ),
    pytest.param(
        {"subject": 123},
        _exactly("campaign_mailing.subject: Input should be a valid string"),
        id="subject-number",
    ),
    pytest.param(
        {"html_part": ["<p>a</p>"]},
        _exactly("campaign_mailing.html_part: Input should be a valid string"),
        id="html-list",
    ),
    pytest.param(
        {"form_data": {"a": 1}, "colour": "red"},
        _starts_with("campaign_mailing.colour: "),
        id="unknown-field",
    ),
    pytest.param(
        {"html_part": None, "text_part": None},
        _exactly("html_part: a mailing needs an html_part or a text_part"),
        id="no-parts-left",
    ),
]


@pytest.mark.parametrize(("fields", "expected"), REFUSED_UPDATES)
@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_a_refused_update_answers_200_with_errors_and_changes_nothing(
    api: Api,
    manual_clock: ManualClock,
    fields: dict[str, Any],
    expected: Callable[[list[str]], bool],
    method: str,
) -> None:
    mailing_id = make_mailing(api, "Existing", text_part="Plain", form_data={"a": 0})
    before = attributes(api, mailing_id, with_images="true")
    manual_clock.advance(timedelta(minutes=1))
    response = api.request(
        method, f"/campaign_mailings/{mailing_id}", json={"campaign_mailing": fields}
    )
    errors = errors_of(response)
    assert expected(errors), errors
    assert attributes(api, mailing_id, with_images="true") == before
    assert subjects(api) == ["Existing"]


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_an_update_without_the_wrapper_is_refused(api: Api, method: str) -> None:
    mailing_id = make_mailing(api, "Existing")
    before = attributes(api, mailing_id)
    response = api.request(method, f"/campaign_mailings/{mailing_id}", json={"subject": "New"})
    assert errors_of(response)[0] == "campaign_mailing: Field required"
    assert attributes(api, mailing_id) == before


def test_a_subject_is_unique_in_its_account_only(api: Api, other_api: Api) -> None:
    first = make_mailing(api, "Monthly")
    errors = errors_of(create(api, subject="Monthly", html_part=SIMPLE_HTML))
    assert errors == ["subject: another campaign mailing already has the subject 'Monthly'"]
    # Surrounding spaces are trimmed, so this is the same subject.
    errors = errors_of(create(api, subject="  Monthly ", html_part=SIMPLE_HTML))
    assert errors == ["subject: another campaign mailing already has the subject 'Monthly'"]
    assert [m["id"] for m in listing(api)] == [first]

    theirs = ok(create(other_api, subject="Monthly", html_part=SIMPLE_HTML))["data"]["id"]
    assert attributes(other_api, theirs)["subject"] == "Monthly"
    assert [m["id"] for m in listing(other_api)] == [theirs]
    assert [m["id"] for m in listing(api)] == [first]


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_renaming_to_a_taken_subject_is_refused(api: Api, method: str) -> None:
    make_mailing(api, "First")
    second = make_mailing(api, "Second")
    before = attributes(api, second)
    response = api.request(
        method, f"/campaign_mailings/{second}", json={"campaign_mailing": {"subject": "First"}}
    )
    assert errors_of(response) == [
        "subject: another campaign mailing already has the subject 'First'"
    ]
    assert attributes(api, second) == before
    assert subjects(api) == ["First", "Second"]


# --- the list ----------------------------------------------------------------------------------


def test_the_list_form_of_a_new_mailing(api: Api, manual_clock: ManualClock) -> None:
    mailing_id = make_mailing(api, "Listed", default_subject="Listed too")
    assert listing(api) == [
        {
            "id": mailing_id,
            "type": "campaign_mailing",
            "attributes": {
                "subject": "Listed",
                "default_subject": "Listed too",
                "template_type": "quill",
                "created_at": "2026-01-05T09:00:00Z",
                "updated_at": "2026-01-05T09:00:00Z",
                **ZERO_COUNTS,
            },
        }
    ]


def test_the_list_is_empty_for_a_new_account(api: Api, other_api: Api) -> None:
    make_mailing(other_api, "Not yours")
    assert listing(api) == []


SEARCHABLE = ["Spring sale", "Summer SALE", "Newsletter 12", "Autumn letter"]


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("Spring", ["Spring sale"]),
        ("^S", ["Spring sale", "Summer SALE"]),
        ("letter( \\d+)?$", ["Newsletter 12", "Autumn letter"]),
        ("\\d{2}", ["Newsletter 12"]),
        ("Spring|Autumn", ["Spring sale", "Autumn letter"]),
        ("^$", []),
        ("nothing like this", []),
    ],
)
def test_search_is_a_regular_expression_on_the_subject(
    api: Api, search: str, expected: list[str]
) -> None:
    for subject in SEARCHABLE:
        make_mailing(api, subject)
    assert subjects(api, search=search) == expected


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("sale", ["Spring sale", "Summer SALE"]),
        ("SALE$", ["Spring sale", "Summer SALE"]),
        ("NEWS", ["Newsletter 12"]),
        ("^s", ["Spring sale", "Summer SALE"]),
    ],
)
def test_search_ignores_case(api: Api, search: str, expected: list[str]) -> None:
    for subject in SEARCHABLE:
        make_mailing(api, subject)
    assert subjects(api, search=search) == expected


@pytest.mark.parametrize("search", ["(", "[a-", "*", "a{2,1}"])
def test_a_bad_regular_expression_is_400_naming_search(api: Api, search: str) -> None:
    make_mailing(api, "Spring sale")
    body = assert_error(
        api.get("/campaign_mailings", params={"search": search}), 400, field="search"
    )
    assert body["error"].startswith("search: ")


def test_a_regex_only_python_understands_is_never_a_500(api: Api) -> None:
    make_mailing(api, "Spring sale")
    # Valid for Python's re, not for PostgreSQL's regex engine.
    response = api.get("/campaign_mailings", params={"search": "(?P<season>Spring)"})
    if response.status_code == 400:
        assert_error(response, 400, code="bad_request", field="search")
    else:
        assert [m["attributes"]["subject"] for m in ok(response)["data"]] == ["Spring sale"]


@pytest.mark.parametrize("parameter", ["search", "template_type"])
def test_a_nul_in_a_filter_finds_nothing_or_is_400_naming_it(api: Api, parameter: str) -> None:
    make_mailing(api, "Spring sale")
    response = api.get("/campaign_mailings", params={parameter: "a\x00b"})
    if response.status_code == 400:
        assert_error(response, 400, field=parameter)
    else:
        assert ok(response) == {"data": []}


def test_filter_by_template_type(api: Api) -> None:
    make_mailing(api, "One")
    make_mailing(api, "Two", template_type="html")
    make_mailing(api, "Three")
    assert subjects(api, template_type="quill") == ["One", "Three"]
    assert subjects(api, template_type="html") == ["Two"]
    assert subjects(api, template_type="mjml") == []
    assert subjects(api, template_type="quill", search="^T") == ["Three"]


def test_order(api: Api) -> None:
    for subject in ["Charlie", "Alpha", "Delta", "Bravo"]:
        make_mailing(api, subject)
    assert subjects(api) == ["Charlie", "Alpha", "Delta", "Bravo"]
    assert subjects(api, order="desc") == ["Bravo", "Delta", "Alpha", "Charlie"]
    assert subjects(api, order_by="subject") == ["Alpha", "Bravo", "Charlie", "Delta"]
    assert subjects(api, order_by="subject", order="asc") == ["Alpha", "Bravo", "Charlie", "Delta"]
    assert subjects(api, order_by="subject", order="desc") == [
        "Delta",
        "Charlie",
        "Bravo",
        "Alpha",
    ]
    assert subjects(api, order_by="subject", items=2, page=2) == ["Charlie", "Delta"]


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("order_by", "sent_count"),
        ("order", "up"),
        ("items", "0"),
        ("items", "101"),
        ("page", "0"),
        ("items", "many"),
        ("pagination", "sometimes"),
    ],
)
def test_out_of_range_list_parameters_are_400(api: Api, parameter: str, value: str) -> None:
    response = api.get("/campaign_mailings", params={parameter: value})
    assert_error(response, 400, code="invalid_parameter", field=parameter)


def test_paging(api: Api) -> None:
    created = [f"Mailing {n:02d}" for n in range(25)]
    for subject in created:
        make_mailing(api, subject, html_part="<p>Hello</p>")
    assert subjects(api) == created[:20]
    assert subjects(api, page=2) == created[20:]
    assert subjects(api, page=3) == []
    assert subjects(api, items=10, page=3) == created[20:]
    assert subjects(api, items=100) == created
    assert subjects(api, pagination="false") == created
    assert subjects(api, pagination="false", items=5, page=2) == created
    assert subjects(api, pagination="false", order="desc") == created[::-1]
    assert subjects(api, pagination="true", items=5, page=2) == created[5:10]


def test_counts_follow_a_send(
    api: Api, manual_clock: ManualClock, run_tick: Tick, smtp_server: SmtpTestServer
) -> None:
    mailing_id = make_mailing(api, "Counted")
    other = make_mailing(api, "Not sent")
    list_id = make_list(api, "Readers")
    add_subscribers(api, list_id, [{"email": "ann@example.com"}, {"email": "bob@example.com"}])
    assert [{k: m["attributes"][k] for k in ZERO_COUNTS} for m in listing(api)] == [
        ZERO_COUNTS,
        ZERO_COUNTS,
    ]
    started = send(api, mailing_id, list_id)
    finish_send(manual_clock, run_tick)

    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == [
        "ann@example.com",
        "bob@example.com",
    ]
    by_id = {m["id"]: m["attributes"] for m in listing(api)}
    assert {k: by_id[mailing_id][k] for k in ZERO_COUNTS} == {
        **ZERO_COUNTS,
        "sent_count": 2,
        "delivered_count": 2,
    }
    assert {k: by_id[other][k] for k in ZERO_COUNTS} == ZERO_COUNTS
    assert job(api, started["jid"])["state"] == "succeeded"


def test_counts_show_bounces_opens_and_clicks(
    api: Api, manual_clock: ManualClock, run_tick: Tick, smtp_server: SmtpTestServer
) -> None:
    smtp_server.replies["gone@example.com"] = "550 5.1.1 No such user"
    mailing_id = make_mailing(api, "Tracked")
    list_id = make_list(api, "Readers")
    add_subscribers(api, list_id, [{"email": "ann@example.com"}, {"email": "gone@example.com"}])
    started = send(api, mailing_id, list_id)
    run_tick()
    run_tick()
    [message] = to(smtp_server.messages, "ann@example.com")
    assert "List-Unsubscribe" in message
    html = html_of(message)
    assert "https://shop.example.com/sale" not in html  # links are rewritten for tracking
    clicks = re.findall(r'href="https://mail\.example\.com(/t/c/[^"]+)"', html)
    assert clicks
    assert api.client.get(clicks[0], follow_redirects=False).status_code == 302
    manual_clock.advance(timedelta(seconds=3))
    run_tick()

    [counted] = listing(api)
    assert {k: counted["attributes"][k] for k in ZERO_COUNTS} == {
        "sent_count": 2,
        "delivered_count": 1,
        "viewed_count": 1,
        "clicked_count": 1,
        "bounced_count": 1,
        "unsubscribed_count": 0,
    }
    detail = ok(api.get(f"/campaign_mailing_sends/{started['campaign_mailing_send_id']}"))
    assert detail["data"]["attributes"]["counts"] == {
        "recipients": 2,
        "pending": 0,
        "delivered": 1,
        "soft_bounced": 0,
        "hard_bounced": 1,
        "skipped": 0,
        "failed": 0,
        "opened": 1,
        "clicked": 1,
        "unsubscribed": 0,
    }


# --- one mailing: unknown and other accounts' -------------------------------------------------


@pytest.mark.parametrize("mailing_id", [UNKNOWN_ID, "not-a-uuid", "12", "x" * 300])
def test_an_unknown_mailing_is_404(api: Api, mailing_id: str) -> None:
    make_mailing(api, "Known")
    assert_error(api.get(f"/campaign_mailings/{mailing_id}"), 404, code="not_found")


def test_another_accounts_mailing_is_404(api: Api, other_api: Api) -> None:
    theirs = make_mailing(other_api, "Theirs")
    mine = make_mailing(api, "Mine")
    assert_error(api.get(f"/campaign_mailings/{theirs}"), 404, code="not_found")
    assert_error(other_api.get(f"/campaign_mailings/{mine}"), 404, code="not_found")
    assert attributes(api, mine)["subject"] == "Mine"
    assert attributes(other_api, theirs)["subject"] == "Theirs"


def test_an_id_in_upper_case_names_the_same_mailing(api: Api) -> None:
    mailing_id = make_mailing(api, "Cased")
    response = api.get(f"/campaign_mailings/{mailing_id.upper()}")
    assert ok(response)["data"]["id"] == mailing_id


# --- bulk delete -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="no-body"),
        pytest.param({"json": {}}, id="empty-object"),
        pytest.param({"json": {"campaign_mailing_ids": []}}, id="empty-ids"),
    ],
)
def test_bulk_delete_without_ids_does_nothing(api: Api, kwargs: dict[str, Any]) -> None:
    make_mailing(api, "Stays")
    response = api.request("DELETE", "/campaign_mailings_bulk_delete", **kwargs)
    assert response.status_code == 200
    assert response.json() == {}
    assert subjects(api) == ["Stays"]


def test_bulk_delete_removes_mailings_with_their_sends(
    api: Api, manual_clock: ManualClock, run_tick: Tick, smtp_server: SmtpTestServer
) -> None:
    sent = make_mailing(api, "Sent one")
    planned = make_mailing(api, "Planned one")
    kept = make_mailing(api, "Kept")
    list_id = make_list(api, "Readers")
    add_subscribers(api, list_id, [{"email": "ann@example.com"}, {"email": "bob@example.com"}])
    done = send(api, sent, list_id)
    finish_send(manual_clock, run_tick)
    later = ok(
        schedule(
            api,
            iso(START + timedelta(hours=1)),
            campaign_mailing_id=planned,
            subscription_list_id=list_id,
        )
    )["data"]
    kept_send = send(api, kept, list_id)
    finish_send(manual_clock, run_tick)
    delivered_before = len(smtp_server.messages)
    assert delivered_before == 4

    response = api.request(
        "DELETE", "/campaign_mailings_bulk_delete", json={"campaign_mailing_ids": [sent, planned]}
    )
    assert response.status_code == 200
    assert response.json() == {}

    for gone in (sent, planned):
        assert_error(api.get(f"/campaign_mailings/{gone}"), 404, code="not_found")
    for gone_send in (done["campaign_mailing_send_id"], later["campaign_mailing_send_id"]):
        assert_error(api.get(f"/campaign_mailing_sends/{gone_send}"), 404, code="not_found")
    assert [s["id"] for s in sends(api)] == [kept_send["campaign_mailing_send_id"]]
    assert [m["id"] for m in listing(api)] == [kept]
    assert listing(api)[0]["attributes"]["sent_count"] == 2

    # The scheduled send of a deleted mailing never goes out.
    assert job(api, later["jid"])["state"] == "cancelled"
    manual_clock.advance(timedelta(hours=2))
    finish_send(manual_clock, run_tick)
    assert len(smtp_server.messages) == delivered_before


@pytest.mark.parametrize("position", [0, 1, 2])
def test_bulk_delete_with_an_unknown_id_deletes_nothing(api: Api, position: int) -> None:
    first = make_mailing(api, "First")
    second = make_mailing(api, "Second")
    ids = [first, second]
    ids.insert(position, UNKNOWN_ID)
    response = api.request(
        "DELETE", "/campaign_mailings_bulk_delete", json={"campaign_mailing_ids": ids}
    )
    # Paubox documents only 200 here: the refusal is its `errors` string, naming the id.
    assert errors_string(response).startswith(f"campaign_mailing_ids[{position}]: ")
    assert subjects(api) == ["First", "Second"]


def test_bulk_delete_cannot_reach_another_account(api: Api, other_api: Api) -> None:
    mine = make_mailing(api, "Mine")
    theirs = make_mailing(other_api, "Theirs")
    response = api.request(
        "DELETE", "/campaign_mailings_bulk_delete", json={"campaign_mailing_ids": [mine, theirs]}
    )
    assert errors_string(response).startswith("campaign_mailing_ids[1]: ")
    assert subjects(api) == ["Mine"]
    assert subjects(other_api) == ["Theirs"]


def test_bulk_delete_refuses_ids_that_are_not_uuids(api: Api) -> None:
    make_mailing(api, "Stays")
    response = api.request(
        "DELETE", "/campaign_mailings_bulk_delete", json={"campaign_mailing_ids": ["nope"]}
    )
    assert errors_string(response).startswith("campaign_mailing_ids[0]: ")
    assert subjects(api) == ["Stays"]


# --- test emails -------------------------------------------------------------------------------


def test_a_test_email_is_one_untracked_copy(
    api: Api, run_tick: Tick, smtp_server: SmtpTestServer
) -> None:
    mailing_id = make_mailing(api, "Preview {{ custom.plan }}")
    response = api.get(
        f"/campaign_mailings/{mailing_id}/send_test_email", params={"to_email": "qa@example.com"}
    )
    assert response.status_code == 204
    assert response.content == b""
    run_tick()
    run_tick()
    assert [m.rcpt_tos for m in smtp_server.messages] == [["qa@example.com"]]
    message = parsed(smtp_server.messages[0])
    assert message["Subject"].startswith("[Test] ")
    assert message["Subject"] == "[Test] Preview"
    assert message["To"] == "qa@example.com"
    assert "List-Unsubscribe" not in message
    assert "List-Unsubscribe-Post" not in message
    html = html_of(message)
    assert 'href="https://shop.example.com/sale"' in html
    assert 'href="https://blog.example.com/post?id=1"' in html
    assert "/t/c/" not in html
    assert "/t/o/" not in html
    assert "mail.example.com/t/" not in html
    assert "https://shop.example.com/sale" in text_of(message)
    # Not counted anywhere.
    [listed] = listing(api)
    assert {k: listed["attributes"][k] for k in ZERO_COUNTS} == ZERO_COUNTS
    assert sends(api) == []


def test_a_blank_merge_field_renders_as_nothing(
    api: Api, manual_clock: ManualClock, run_tick: Tick, smtp_server: SmtpTestServer
) -> None:
    mailing_id = make_mailing(
        api, "Hello {{ first_name }}", html_part="<p>Dear {{ last_name }}.</p>"
    )
    list_id = make_list(api, "Readers")
    add_subscribers(api, list_id, [{"email": "ann@example.com"}])
    send(api, mailing_id, list_id)
    finish_send(manual_clock, run_tick)
    response = api.get(
        f"/campaign_mailings/{mailing_id}/send_test_email", params={"to_email": "qa@example.com"}
    )
    assert response.status_code == 204
    run_tick()
    [sent] = to(smtp_server.messages, "ann@example.com")
    [test] = to(smtp_server.messages, "qa@example.com")
    assert sent["Subject"] == "Hello"
    assert test["Subject"] == "[Test] Hello"
    assert "None" not in html_of(sent)
    assert "None" not in text_of(test)


def test_a_test_email_goes_to_the_address_in_lower_case(
    api: Api, run_tick: Tick, smtp_server: SmtpTestServer
) -> None:
    mailing_id = make_mailing(api, "Cased address")
    response = api.get(
        f"/campaign_mailings/{mailing_id}/send_test_email", params={"to_email": "QA@Example.COM"}
    )
    assert response.status_code == 204
    run_tick()
    assert [m.rcpt_tos for m in smtp_server.messages] == [["qa@example.com"]]


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({}, id="missing"),
        pytest.param({"to_email": ""}, id="empty"),
        pytest.param({"to_email": "not-an-email"}, id="invalid"),
        pytest.param({"to_email": "a@b@example.com"}, id="two-ats"),
    ],
)
def test_a_test_email_needs_a_valid_address(
    api: Api, run_tick: Tick, smtp_server: SmtpTestServer, params: dict[str, str]
) -> None:
    mailing_id = make_mailing(api, "Needs an address")
    response = api.get(f"/campaign_mailings/{mailing_id}/send_test_email", params=params)
    assert_error(response, 400, code="invalid_parameter", field="to_email")
    run_tick()
    assert smtp_server.messages == []


@pytest.mark.parametrize("mailing_id", [UNKNOWN_ID, "not-a-uuid"])
def test_a_test_email_of_an_unknown_mailing_is_404(
    api: Api, run_tick: Tick, smtp_server: SmtpTestServer, mailing_id: str
) -> None:
    response = api.get(
        f"/campaign_mailings/{mailing_id}/send_test_email", params={"to_email": "qa@example.com"}
    )
    assert_error(response, 404, code="not_found")
    run_tick()
    assert smtp_server.messages == []


def test_a_test_email_of_another_accounts_mailing_is_404(
    api: Api, other_api: Api, run_tick: Tick, smtp_server: SmtpTestServer
) -> None:
    theirs = make_mailing(other_api, "Theirs")
    response = api.get(
        f"/campaign_mailings/{theirs}/send_test_email", params={"to_email": "qa@example.com"}
    )
    assert_error(response, 404, code="not_found")
    run_tick()
    assert smtp_server.messages == []


def test_no_test_email_to_a_subscriber_who_opted_out(
    api: Api, run_tick: Tick, smtp_server: SmtpTestServer
) -> None:
    mailing_id = make_mailing(api, "Opted out")
    add_subscribers(api, None, [{"email": "out@example.com"}])
    opted_out = subscriber_id(api, "out@example.com")
    ok(api.post("/subscriptions/unsubscribe", {"subscriber_ids": [opted_out]}))
    for address in ("out@example.com", "OUT@example.com"):
        response = api.get(
            f"/campaign_mailings/{mailing_id}/send_test_email", params={"to_email": address}
        )
        assert_error(response, 422, code="invalid", field="to_email")
    run_tick()
    assert smtp_server.messages == []


def test_an_opt_out_in_another_account_does_not_stop_a_test_email(
    api: Api, other_api: Api, run_tick: Tick, smtp_server: SmtpTestServer
) -> None:
    add_subscribers(other_api, None, [{"email": "shared@example.com"}])
    theirs = subscriber_id(other_api, "shared@example.com")
    ok(other_api.post("/subscriptions/unsubscribe", {"subscriber_ids": [theirs]}))
    mailing_id = make_mailing(api, "Mine")
    response = api.get(
        f"/campaign_mailings/{mailing_id}/send_test_email",
        params={"to_email": "shared@example.com"},
    )
    assert response.status_code == 204
    run_tick()
    assert [m.rcpt_tos for m in smtp_server.messages] == [["shared@example.com"]]


def test_no_test_email_to_an_address_that_bounced(
    api: Api, manual_clock: ManualClock, run_tick: Tick, smtp_server: SmtpTestServer
) -> None:
    smtp_server.replies["gone@example.com"] = "550 5.1.1 No such user"
    mailing_id = make_mailing(api, "Bounces")
    list_id = make_list(api, "Readers")
    add_subscribers(api, list_id, [{"email": "gone@example.com"}])
    send(api, mailing_id, list_id)
    finish_send(manual_clock, run_tick)
    assert smtp_server.messages == []
    response = api.get(
        f"/campaign_mailings/{mailing_id}/send_test_email",
        params={"to_email": "gone@example.com"},
    )
    assert_error(response, 422, code="invalid", field="to_email")


# --- sends -------------------------------------------------------------------------------------


def _send_body(mailing_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "campaign_mailing_id": mailing_id,
        "campaign_mailing_send": {"sender_email": "owner@example.com", **fields},
    }


def test_a_send_reports_its_id_and_job_and_is_listed(
    api: Api, manual_clock: ManualClock, run_tick: Tick, smtp_server: SmtpTestServer
) -> None:
    mailing_id = make_mailing(api, "Sent now", **{"from": "shop@example.com"})
    list_id = make_list(api, "Readers")
    add_subscribers(api, list_id, [{"email": "ann@example.com"}, {"email": "bob@example.com"}])
    response = api.post(
        "/campaign_mailing_sends",
        _send_body(mailing_id, subscription_list_id=list_id, from_name="The Shop"),
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"data"}
    assert set(body["data"]) == {"campaign_mailing_send_id", "jid"}
    send_id, jid = body["data"]["campaign_mailing_send_id"], body["data"]["jid"]
    assert_uuid(send_id)
    assert job(api, jid)["kind"] == "campaign_send"

    finish_send(manual_clock, run_tick)
    [listed] = sends(api)
    assert listed == ok(api.get(f"/campaign_mailing_sends/{send_id}"))["data"]
    assert listed["id"] == send_id
    assert listed["type"] == "campaign_mailing_send"
    assert listed["attributes"] == {
        "campaign_mailing_id": mailing_id,
        "subscription_list_id": list_id,
        "dynamic_list_id": None,
        "list_name": "Readers",
        "subject": "Sent now",
        "from_email": "shop@example.com",
        "from_name": "The Shop",
        "sender_email": "owner@example.com",
        "state": "sent",
        "jid": jid,
        "send_at": None,
        "created_at": "2026-01-05T09:00:00Z",
        "started_at": "2026-01-05T09:00:00Z",
        "finished_at": "2026-01-05T09:00:03Z",
        "counts": {
            "recipients": 2,
            "pending": 0,
            "delivered": 2,
            "soft_bounced": 0,
            "hard_bounced": 0,
            "skipped": 0,
            "failed": 0,
            "opened": 0,
            "clicked": 0,
            "unsubscribed": 0,
        },
    }
    assert job(api, jid)["state"] == "succeeded"
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == [
        "ann@example.com",
        "bob@example.com",
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"campaign_mailing_id": UNKNOWN_ID}, "campaign_mailing_id", id="mailing"),
        pytest.param({"subscription_list_id": UNKNOWN_ID}, "subscription_list_id", id="list"),
        pytest.param({"subscription_list_id": None}, "subscription_list_id", id="no-list"),
    ],
)
def test_a_send_refuses_unknown_references(
    api: Api, run_tick: Tick, smtp_server: SmtpTestServer, change: dict[str, Any], field: str
) -> None:
    mailing_id = make_mailing(api, "Refused")
    list_id = make_list(api, "Readers")
    add_subscribers(api, list_id, [{"email": "ann@example.com"}])
    body = _send_body(mailing_id, subscription_list_id=list_id)
    if "campaign_mailing_id" in change:
        body.update(change)
    else:
        body["campaign_mailing_send"].update(change)
    assert_error(api.post("/campaign_mailing_sends", body), 422, code="invalid", field=field)
    assert sends(api) == []
    run_tick()
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        pytest.param({"subject": "Hi {{ first_name"}, "invalid", "subject", id="no-render"),
        pytest.param(
            {"from_name": "Shop\r\nBcc: all@example.net"},
            "validation_failed",
            "campaign_mailing_send.from_name",
            id="from-name-breaks-header",
        ),
    ],
)
def test_a_send_refuses_what_cannot_be_sent_before_anything_leaves(
    api: Api,
    run_tick: Tick,
    smtp_server: SmtpTestServer,
    change: dict[str, Any],
    code: str,
    field: str,
) -> None:
    mailing_id = make_mailing(api, "Refused")
    list_id = make_list(api, "Readers")
    add_subscribers(api, list_id, [{"email": "ann@example.com"}])
    body = _send_body(mailing_id, subscription_list_id=list_id)
    body["campaign_mailing_send"].update(change)
    assert_error(api.post("/campaign_mailing_sends", body), 422, code=code, field=field)
    assert sends(api) == []
    run_tick()
    assert smtp_server.messages == []


def test_a_send_cannot_use_another_accounts_mailing_or_list(api: Api, other_api: Api) -> None:
    mine = make_mailing(api, "Mine")
    my_list = make_list(api, "Readers")
    theirs = make_mailing(other_api, "Theirs")
    their_list = make_list(other_api, "Their readers")
    response = api.post("/campaign_mailing_sends", _send_body(theirs, subscription_list_id=my_list))
    assert_error(response, 422, field="campaign_mailing_id")
    response = api.post(
        "/campaign_mailing_sends", _send_body(mine, subscription_list_id=their_list)
    )
    assert_error(response, 422, field="subscription_list_id")
    assert sends(api) == []
    assert sends(other_api) == []


@pytest.mark.parametrize(
    ("send_fields", "field"),
    [
        pytest.param({}, "campaign_mailing_send.sender_email", id="missing-sender"),
        pytest.param(
            {"sender_email": "nobody"}, "campaign_mailing_send.sender_email", id="bad-sender"
        ),
    ],
)
def test_a_send_needs_a_sender_email(api: Api, send_fields: dict[str, Any], field: str) -> None:
    mailing_id = make_mailing(api, "Who sent it")
    list_id = make_list(api, "Readers")
    body = {
        "campaign_mailing_id": mailing_id,
        "campaign_mailing_send": {"subscription_list_id": list_id, **send_fields},
    }
    response = api.post("/campaign_mailing_sends", body)
    assert_error(response, 422, code="validation_failed", field=field)
    assert sends(api) == []


@pytest.mark.parametrize("send_id", [UNKNOWN_ID, "not-a-uuid"])
def test_an_unknown_send_is_404(api: Api, send_id: str) -> None:
    assert_error(api.get(f"/campaign_mailing_sends/{send_id}"), 404, code="not_found")


def test_another_accounts_send_is_404(
    api: Api, other_api: Api, manual_clock: ManualClock, run_tick: Tick
) -> None:
    mailing_id = make_mailing(other_api, "Theirs")
    list_id = make_list(other_api, "Their readers")
    theirs = send(other_api, mailing_id, list_id)
    finish_send(manual_clock, run_tick)
    response = api.get(f"/campaign_mailing_sends/{theirs['campaign_mailing_send_id']}")
    assert_error(response, 404, code="not_found")
    assert sends(api) == []
    assert [s["id"] for s in sends(other_api)] == [theirs["campaign_mailing_send_id"]]


# --- scheduled sends ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "send_at",
    [
        "tomorrow",
        "",
        "2030-01-01T10:00:00",
        "2030-01-01",
        "2030-01-01T10:00Z",
        "01/01/2030 10:00",
        "1893492000",
        "2026-13-01T00:00:00Z",
        "2030-02-30T10:00:00Z",
        "2030-01-01T25:00:00+00:00",
        1893492000,
        None,
        ["2030-01-01T10:00:00Z"],
        "2030-01-01T10:00:00.000000000000000000000000000000000000000000000000000Z",
    ],
)
def test_a_bad_send_at_is_400_with_the_paubox_message(
    api: Api, manual_clock: ManualClock, send_at: str
) -> None:
    make_mailing(api, "Later")
    list_id = make_list(api, "Readers")
    response = schedule(api, send_at, subject="Later", subscription_list_id=list_id)
    assert response.status_code == 400, response.text
    assert response.json() == BAD_TIME
    assert sends(api) == []


@pytest.mark.parametrize(
    "send_at", ["2026-01-05T09:00:00Z", "2026-01-05T08:59:59Z", "2020-01-01T00:00:00+00:00"]
)
def test_a_send_at_not_in_the_future_is_422(
    api: Api, manual_clock: ManualClock, send_at: str
) -> None:
    make_mailing(api, "Later")
    list_id = make_list(api, "Readers")
    response = schedule(api, send_at, subject="Later", subscription_list_id=list_id)
    assert_error(response, 422, code="invalid", field="send_at")
    assert sends(api) == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"subject": "No such subject"}, "subject", id="unknown-subject"),
        pytest.param({"subject": "later"}, "subject", id="subject-in-other-case"),
        pytest.param({}, "subject", id="no-subject-no-id"),
        pytest.param(
            {"subject": "Later", "subscription_list_id": UNKNOWN_ID},
            "subscription_list_id",
            id="unknown-list",
        ),
        pytest.param(
            {"campaign_mailing_id": UNKNOWN_ID}, "campaign_mailing_id", id="unknown-mailing-id"
        ),
    ],
)
def test_a_schedule_refuses_unknown_references(
    api: Api, manual_clock: ManualClock, fields: dict[str, Any], field: str
) -> None:
    make_mailing(api, "Later")
    list_id = make_list(api, "Readers")
    body = {"subscription_list_id": list_id, **fields}
    response = schedule(api, "2026-01-05T10:00:00Z", **body)
    assert_error(response, 422, code="invalid", field=field)
    assert sends(api) == []


def test_a_schedule_cannot_name_another_accounts_mailing(
    api: Api, other_api: Api, manual_clock: ManualClock
) -> None:
    make_mailing(other_api, "Theirs")
    list_id = make_list(api, "Readers")
    response = schedule(api, "2026-01-05T10:00:00Z", subject="Theirs", subscription_list_id=list_id)
    assert_error(response, 422, field="subject")
    assert sends(api) == []
    assert sends(other_api) == []


def test_a_scheduled_send_goes_out_at_its_time(
    api: Api, manual_clock: ManualClock, run_tick: Tick, smtp_server: SmtpTestServer
) -> None:
    mailing_id = make_mailing(api, "Tonight")
    list_id = make_list(api, "Readers")
    add_subscribers(
        api,
        list_id,
        [{"email": "ann@example.com"}, {"email": "bob@example.com"}],
    )
    add_subscribers(api, None, [{"email": "not-on-the-list@example.com"}])
    send_at = START + timedelta(hours=1)
    response = schedule(
        api, "2026-01-05T10:00:00Z", subject="Tonight", subscription_list_id=list_id
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert set(response.json()) == {"data"}
    assert set(data) == {"send_at", "send_at_timestamp", "jid", "campaign_mailing_send_id"}
    assert data["send_at"] == "2026-01-05T10:00:00Z"
    assert data["send_at_timestamp"] == str(int(send_at.timestamp()))
    assert data["send_at_timestamp"] == "1767607200"
    jid = data["jid"]
    assert job(api, jid)["state"] == "queued"
    [listed] = sends(api)
    assert listed["id"] == data["campaign_mailing_send_id"]
    assert listed["attributes"]["state"] == "scheduled"
    assert listed["attributes"]["send_at"] == "2026-01-05T10:00:00Z"
    assert listed["attributes"]["campaign_mailing_id"] == mailing_id

    run_tick()
    manual_clock.advance(timedelta(minutes=59, seconds=59))
    run_tick()
    run_tick()
    assert smtp_server.messages == []
    assert job(api, jid)["state"] == "queued"

    manual_clock.advance(timedelta(seconds=2))
    run_tick()
    run_tick()
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == [
        "ann@example.com",
        "bob@example.com",
    ]
    assert parsed(smtp_server.messages[0])["Subject"] == "Tonight"
    manual_clock.advance(timedelta(seconds=3))
    run_tick()
    assert job(api, jid)["state"] == "succeeded"
    [counted] = listing(api)
    assert counted["attributes"]["sent_count"] == 2
    assert counted["attributes"]["delivered_count"] == 2


def test_a_schedule_by_mailing_id_may_override_the_subject(
    api: Api, manual_clock: ManualClock, run_tick: Tick, smtp_server: SmtpTestServer
) -> None:
    mailing_id = make_mailing(api, "Original subject")
    list_id = make_list(api, "Readers")
    add_subscribers(api, list_id, [{"email": "ann@example.com"}])
    response = schedule(
        api,
        "2026-01-05T09:30:00Z",
        campaign_mailing_id=mailing_id,
        subject="Special subject",
        subscription_list_id=list_id,
    )
    assert response.status_code == 200, response.text
    manual_clock.advance(timedelta(minutes=31))
    finish_send(manual_clock, run_tick)
    [message] = to(smtp_server.messages, "ann@example.com")
    assert message["Subject"] == "Special subject"
    assert attributes(api, mailing_id)["subject"] == "Original subject"


def test_send_at_is_answered_in_utc(api: Api, manual_clock: ManualClock) -> None:
    make_mailing(api, "Offset")
    list_id = make_list(api, "Readers")
    response = schedule(
        api, "2026-01-05T12:00:00+02:00", subject="Offset", subscription_list_id=list_id
    )
    data = ok(response)["data"]
    assert data["send_at_timestamp"] == str(int(datetime(2026, 1, 5, 10, tzinfo=UTC).timestamp()))
    assert data["send_at"] == "2026-01-05T10:00:00Z"


def test_send_at_with_an_offset_is_the_same_instant(
    api: Api, manual_clock: ManualClock, run_tick: Tick, smtp_server: SmtpTestServer
) -> None:
    make_mailing(api, "Offset")
    list_id = make_list(api, "Readers")
    add_subscribers(api, list_id, [{"email": "ann@example.com"}])
    # 09:30 in UTC, written as 11:30 at +02:00 and with a lower-case t and z-less offset.
    response = schedule(
        api, "2026-01-05t11:30:00+02:00", subject="Offset", subscription_list_id=list_id
    )
    data = ok(response)["data"]
    assert data["send_at_timestamp"] == "1767605400"
    manual_clock.advance(timedelta(minutes=29))
    run_tick()
    run_tick()
    assert smtp_server.messages == []
    manual_clock.advance(timedelta(minutes=1))
    run_tick()
    run_tick()
    assert [m.rcpt_tos for m in smtp_server.messages] == [["ann@example.com"]]


def test_a_scheduled_send_can_be_cancelled_before_it_starts(
    api: Api, manual_clock: ManualClock, run_tick: Tick, smtp_server: SmtpTestServer
) -> None:
    mailing_id = make_mailing(api, "Maybe")
    list_id = make_list(api, "Readers")
    add_subscribers(api, list_id, [{"email": "ann@example.com"}, {"email": "bob@example.com"}])
    data = ok(schedule(api, "2026-01-05T10:00:00Z", subject="Maybe", subscription_list_id=list_id))[
        "data"
    ]
    jid = data["jid"]
    manual_clock.advance(timedelta(minutes=10))

    response = api.delete(f"/campaign_mailing_schedules/{jid}")
    assert response.status_code == 200, response.text
    cancelled = response.json()["data"]
    assert cancelled["id"] == data["campaign_mailing_send_id"]
    assert cancelled["type"] == "campaign_mailing_send"
    assert cancelled["attributes"]["state"] == "cancelled"
    assert cancelled["attributes"]["jid"] == jid
    assert cancelled["attributes"]["campaign_mailing_id"] == mailing_id
    assert cancelled["attributes"]["finished_at"] == "2026-01-05T09:10:00Z"
    assert job(api, jid)["state"] == "cancelled"
    assert sends(api)[0]["attributes"]["state"] == "cancelled"

    manual_clock.advance(timedelta(hours=1))
    finish_send(manual_clock, run_tick)
    assert smtp_server.messages == []
    assert job(api, jid)["state"] == "cancelled"
    [listed] = listing(api)
    assert {k: listed["attributes"][k] for k in ZERO_COUNTS} == ZERO_COUNTS

    assert_error(api.delete(f"/campaign_mailing_schedules/{jid}"), 422, code="invalid")
    assert job(api, jid)["state"] == "cancelled"


def test_a_send_that_has_begun_cannot_be_cancelled(
    api: Api, manual_clock: ManualClock, run_tick: Tick, smtp_server: SmtpTestServer
) -> None:
    mailing_id = make_mailing(api, "Now")
    list_id = make_list(api, "Readers")
    add_subscribers(api, list_id, [{"email": "ann@example.com"}])
    started = send(api, mailing_id, list_id)
    assert_error(api.delete(f"/campaign_mailing_schedules/{started['jid']}"), 422, code="invalid")
    finish_send(manual_clock, run_tick)
    assert [m.rcpt_tos for m in smtp_server.messages] == [["ann@example.com"]]
    assert job(api, started["jid"])["state"] == "succeeded"


@pytest.mark.parametrize("jid", [UNKNOWN_ID, "not-a-jid"])
def test_cancelling_an_unknown_schedule_is_404(api: Api, jid: str) -> None:
    assert_error(api.delete(f"/campaign_mailing_schedules/{jid}"), 404, code="not_found")


def test_another_account_cannot_cancel_a_schedule(
    api: Api, other_api: Api, manual_clock: ManualClock
) -> None:
    make_mailing(other_api, "Theirs")
    list_id = make_list(other_api, "Their readers")
    data = ok(
        schedule(other_api, "2026-01-05T10:00:00Z", subject="Theirs", subscription_list_id=list_id)
    )["data"]
    assert_error(api.delete(f"/campaign_mailing_schedules/{data['jid']}"), 404, code="not_found")
    assert job(other_api, data["jid"])["state"] == "queued"
    assert sends(other_api)[0]["attributes"]["state"] == "scheduled"


@pytest.mark.parametrize(
    "search",
    [
        pytest.param("(a)\\1", id="backreference"),
        pytest.param("Spring(?= sale)", id="lookahead"),
        pytest.param("(?<!x)Spring", id="lookbehind"),
    ],
)
def test_a_pattern_linear_time_matching_cannot_express_is_400_naming_search(
    api: Api, search: str
) -> None:
    make_mailing(api, "Spring sale")
    body = assert_error(
        api.get("/campaign_mailings", params={"search": search}), 400, field="search"
    )
    assert body["error"].startswith("search: not a valid regular expression")
