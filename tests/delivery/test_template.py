"""Merge tags: variables, the blank-aware default filter, the sandbox, and save-time checks."""

from __future__ import annotations

import time

import pytest
from jinja2.exceptions import SecurityError

from dripstone.delivery.checks import check_templates
from dripstone.delivery.template import (
    HTML_PART,
    SUBJECT,
    TEXT_PART,
    Recipient,
    TemplateError,
    compile_part,
)

JANE = Recipient(
    email="jane@example.com",
    first_name="Jane",
    last_name="Doe",
    phone_number="+15555550100",
    custom={"plan": "Gold", "Favorite color": "teal"},
)


def render(part: str, source: str, recipient: Recipient = JANE, **extra: object) -> str:
    return compile_part(part, source).render(recipient.merge_fields(), **extra)


def test_every_merge_field_renders() -> None:
    source = (
        "{{ email }}|{{ first_name }}|{{ last_name }}|{{ phone_number }}|"
        "{{ custom.plan }}|{{ custom['Favorite color'] }}|{{ unsubscribe_url }}"
    )
    assert render(TEXT_PART, source, unsubscribe_url="https://u.test/1") == (
        "jane@example.com|Jane|Doe|+15555550100|Gold|teal|https://u.test/1"
    )


@pytest.mark.parametrize("first_name", [None, "", "   "])
def test_default_applies_to_blank_names(first_name: str | None) -> None:
    blank = Recipient(email="x@example.com", first_name=first_name)
    assert render(SUBJECT, 'Hi {{ first_name | default("there") }}!', blank) == "Hi there!"
    assert render(SUBJECT, 'Hi {{ first_name | d("there") }}!', blank) == "Hi there!"


def test_default_keeps_a_real_value_and_applies_to_unknown_names() -> None:
    assert render(SUBJECT, '{{ first_name | default("there") }}') == "Jane"
    assert render(SUBJECT, '{{ custom.nickname | default("friend") }}') == "friend"
    assert render(SUBJECT, '{{ nothing_at_all | default("x") }}') == "x"


def test_default_boolean_mode_replaces_any_falsy_value() -> None:
    zero = Recipient(email="x@example.com", custom={"visits": 0})  # type: ignore[dict-item]
    assert render(TEXT_PART, '{{ custom.visits | default("none", true) }}', zero) == "none"
    assert render(TEXT_PART, '{{ custom.visits | default("none") }}', zero) == "0"


def test_unknown_names_render_as_nothing() -> None:
    assert render(TEXT_PART, "[{{ nickname }}][{{ custom.missing }}][{{ custom.a.b['c'] }}]") == (
        "[][][]"
    )
    assert render(TEXT_PART, "{% if custom.missing %}yes{% else %}no{% endif %}") == "no"
    assert render(TEXT_PART, "{% for x in custom.missing %}{{ x }}{% endfor %}.") == "."


def test_html_is_autoescaped_but_subject_and_text_are_not() -> None:
    odd = Recipient(email="x@example.com", first_name="<b>Tom & Jerry</b>")
    assert render(HTML_PART, "<p>{{ first_name }}</p>", odd) == (
        "<p>&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;</p>"
    )
    assert render(SUBJECT, "{{ first_name }}", odd) == "<b>Tom & Jerry</b>"
    assert render(TEXT_PART, "{{ first_name }}", odd) == "<b>Tom & Jerry</b>"


def test_trailing_newline_is_kept() -> None:
    assert render(TEXT_PART, "Hello\n") == "Hello\n"


@pytest.mark.parametrize(
    "source",
    [
        "{{ email.__class__ }}",
        "{{ email.__class__.__mro__ }}",
        "{{ custom.__init__.__globals__ }}",
        "{% if email.__class__ %}x{% endif %}",
        "{{ email.__class__ | default('x') }}",
    ],
)
def test_the_sandbox_refuses_unsafe_attributes(source: str) -> None:
    template = compile_part(TEXT_PART, source)
    with pytest.raises(SecurityError, match="unsafe"):
        template.render(JANE.merge_fields())


def test_templates_cannot_change_the_data() -> None:
    custom = {"plan": "Gold"}
    template = compile_part(TEXT_PART, "{{ custom.update({'plan': 'Free'}) }}")
    with pytest.raises(SecurityError):
        template.render(Recipient(email="x@example.com", custom=custom).merge_fields())
    assert custom == {"plan": "Gold"}


def test_a_syntax_error_names_the_part_and_line() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_part(HTML_PART, "<p>\n\n{{ first_name }\n</p>")
    assert str(caught.value) == "html_part line 3: unexpected '}'"
    assert (caught.value.part, caught.value.line) == (HTML_PART, 3)


def test_reserved_names_are_refused() -> None:
    with pytest.raises(TemplateError, match="reserved"):
        compile_part(HTML_PART, "{{ _dripstone_click[1] }}")
    with pytest.raises(TemplateError, match="reserved"):
        compile_part(HTML_PART, "{% set _dripstone_pixel = 'x' %}")


def test_check_templates_accepts_good_templates() -> None:
    assert (
        check_templates(
            'Hi {{ first_name | default("there") }}',
            '<p>{{ custom.plan }}</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>',
            "Plan: {{ custom.plan }}",
        )
        == []
    )
    assert check_templates("Static subject", None, None) == []


def test_check_templates_reports_every_part_with_its_name() -> None:
    errors = check_templates("Hi {{ first_name", "<p>\n{% if x %}\n</p>", "{{ 1 + }}")
    assert len(errors) == 3
    assert errors[0].startswith("subject line 1: ")
    assert errors[1].startswith("html_part line 2: ")  # where the unclosed block opens
    assert "endif" in errors[1]
    assert errors[2].startswith("text_part line 1: ")


def test_check_templates_catches_errors_that_only_show_when_rendering() -> None:
    errors = check_templates(
        "Hello", "<p>ok</p>\n<p>{{ email.__class__ }}</p>", "{{ make_coupon() }}"
    )
    assert errors[0].startswith("html_part line 2: ")
    assert "unsafe" in errors[0]
    assert errors[1].startswith("text_part line 1: ")
    assert "make_coupon" in errors[1]


def test_check_templates_refuses_a_subject_of_several_lines() -> None:
    assert check_templates("Hello\nBcc: everyone@example.com", None, "x") == [
        "subject: must be a single line"
    ]


# --- the limits of one render -------------------------------------------------------------------

BOMBS = [
    pytest.param("{{ 'a' * 10**8 }}", "characters", id="string-repetition"),
    pytest.param("{{ ['a' * 1000] * 100000 }}", "characters", id="list-of-long-strings"),
    pytest.param("{{ 9**(9**9) }}", "bits", id="power"),
    pytest.param("{{ (10**3000) * (10**3000) }}", "bits", id="product"),
    pytest.param(
        "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
        "loops",
        id="nested-loops",
    ),
    pytest.param(
        "{% set ns = namespace(s='ab') %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        "characters",
        id="doubling-concatenation",
    ),
    pytest.param(
        "{% set ns = namespace(s='ab') %}{% for i in range(30) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}{{ ns.s|length }}",
        "characters",
        id="doubling-addition",
    ),
    pytest.param("{{ 'a'|center(10**9) }}", "characters", id="center-filter"),
    pytest.param("{{ 'a'.rjust(10**9) }}", "characters", id="rjust-method"),
    pytest.param("{{ '{:>999999999}'.format(1) }}", "characters", id="format-width"),
    pytest.param("{{ '%999999999d' % 1 }}", "characters", id="percent-width"),
    pytest.param("{{ 'x'|indent(10**9, true) }}", "characters", id="indent-filter"),
    pytest.param("{{ range(100000)|join('x' * 1000) }}", "characters", id="join-filter"),
    pytest.param("{{ ('a' * 5000)|replace('a', 'b' * 5000) }}", "characters", id="replace"),
    pytest.param("{{ lipsum(10**6) }}", "characters", id="lipsum"),
    pytest.param(
        "{% macro m() %}{% for i in range(10000) %}" + "x" * 2000 + "{% endfor %}{% endmacro %}"
        "{% set page = m() %}{{ page|length }}",
        "characters",
        id="static-text-in-a-loop",
    ),
]


@pytest.mark.parametrize(("bomb", "limit"), BOMBS)
def test_a_template_bomb_is_refused_at_save_at_once_naming_the_part(bomb: str, limit: str) -> None:
    check_templates("Hello", "<p>warm-up</p>", None)  # imports and first compiles
    started = time.monotonic()
    errors = check_templates("Hello", f"<p>{bomb}</p>", None)
    elapsed = time.monotonic() - started
    assert len(errors) == 1, errors
    assert errors[0].startswith("html_part line 1: "), errors
    assert limit in errors[0]
    assert elapsed < 1, f"took {elapsed:.2f}s"


@pytest.mark.parametrize("part", [SUBJECT, TEXT_PART])
def test_every_part_is_bounded(part: str) -> None:
    subject = "{{ 'a' * 10**8 }}" if part == SUBJECT else "Hello"
    text = "{{ 'a' * 10**8 }}" if part == TEXT_PART else None
    (error,) = check_templates(subject, "<p>Hi</p>", text)
    assert error.startswith(f"{part} line 1: ")


def test_a_render_past_the_limits_fails_whatever_passed_at_save() -> None:
    source = "{{ 'a' * (custom.size | default(0) | int) }}"
    assert check_templates("Hello", None, source) == []
    huge = Recipient(email="jane@example.com", custom={"size": str(10**8)})
    with pytest.raises(SecurityError, match="10,000,000 characters"):
        render(TEXT_PART, source, huge)
    small = Recipient(email="jane@example.com", custom={"size": "3"})
    assert render(TEXT_PART, source, small) == "aaa"


def test_each_render_has_its_own_budget() -> None:
    template = compile_part(TEXT_PART, "{{ 'a' * 4000000 }}")  # built, then written: 8,000,000
    for _ in range(3):  # each render alone fits; together they would not
        assert len(template.render()) == 4_000_000


def test_ordinary_templates_fit_well_within_the_limits() -> None:
    source = (
        "{% for key, value in custom | dictsort %}{{ key }}={{ value }};{% endfor %}"
        "{% for i in range(1000) %}{{ loop.index }}{% endfor %}"
        "{{ (first_name ~ ' ' ~ last_name) | upper | center(30) }}"
        "{{ '%.2f' % (19.99 * 3) }} {{ '{:>6}'.format(42) }} {{ 2**64 }} "
        "{{ ['a', 'b'] | join(', ') }} {{ 'x' * 3 }} {{ [1, 2] + [3] }} "
        "{{ lipsum(1) | length > 0 }}"
    )
    assert check_templates("Hello {{ first_name }}", None, source) == []
    out = render(TEXT_PART, source)
    assert out.startswith("Favorite color=teal;plan=Gold;123")
    assert out.endswith(
        "JANE DOE           59.97     42 18446744073709551616 a, b xxx [1, 2, 3] True"
    )


def test_a_number_literal_too_long_for_python_is_an_error_naming_the_part() -> None:
    (error,) = check_templates("Hello", "<p>{{ 1" + "0" * 5000 + " }}</p>", None)
    assert error.startswith("html_part")
