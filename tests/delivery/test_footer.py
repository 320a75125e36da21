"""The unsubscribe footer (exactly one, across saves) and text derived from HTML."""

from __future__ import annotations

import pytest

from dripstone.delivery.checks import check_templates
from dripstone.delivery.footer import (
    DEFAULT_FOOTER,
    FOOTER_END,
    FOOTER_START,
    derive_text,
    with_unsubscribe_footer,
    without_unsubscribe_footer,
)
from dripstone.delivery.template import TemplateError

PAGE = """<!DOCTYPE html>
<html>
<head><style>p { color: #333; }</style></head>
<body>
<p>Hi {{ first_name | default("there") }},</p>
<p><a href="https://shop.example.com/?e={{ email }}">Shop</a></p>
</body>
</html>
"""


def test_the_footer_is_added_once_just_before_body_end() -> None:
    footered = with_unsubscribe_footer(PAGE)
    assert footered.count(FOOTER_START) == 1
    assert footered.count("{{ unsubscribe_url }}") == 1
    assert footered.index(FOOTER_END) + len(FOOTER_END) == footered.index("</body>")
    # Everything else is as the user wrote it, merge tags included.
    assert without_unsubscribe_footer(footered) == PAGE


def test_saving_again_and_again_never_stacks_footers() -> None:
    once = with_unsubscribe_footer(PAGE)
    assert with_unsubscribe_footer(once) == once
    assert with_unsubscribe_footer(with_unsubscribe_footer(once)) == once


def test_an_edited_footer_is_replaced_not_kept_beside_the_new_one() -> None:
    edited = with_unsubscribe_footer(PAGE).replace("Unsubscribe</a>", "Leave</a>")
    saved = with_unsubscribe_footer(edited)
    assert saved.count(FOOTER_START) == 1
    assert "Leave" not in saved
    assert "Unsubscribe</a>" in saved


def test_a_footer_moved_by_an_editor_is_still_replaced() -> None:
    footered = with_unsubscribe_footer(PAGE)
    block = footered[footered.index(FOOTER_START) : footered.index(FOOTER_END) + len(FOOTER_END)]
    moved = footered.replace(block, "").replace("<body>", "<body>" + block)
    saved = with_unsubscribe_footer(moved)
    assert saved == footered


def test_a_fragment_without_body_gets_the_footer_at_the_end() -> None:
    saved = with_unsubscribe_footer("<p>Hello {{ first_name }}</p>")
    assert saved == "<p>Hello {{ first_name }}</p>" + FOOTER_START + DEFAULT_FOOTER + FOOTER_END


def test_body_end_inside_merge_tags_or_comments_does_not_mislead() -> None:
    page = "<html><body><p>{# </body> #}{{ '</body>' }}</p><!-- </body> --></body></html>"
    saved = with_unsubscribe_footer(page)
    assert saved.index(FOOTER_END) + len(FOOTER_END) == saved.rindex("</body>")
    assert saved.startswith("<html><body><p>{# </body> #}{{ '</body>' }}</p><!-- </body> -->")


def test_a_custom_footer() -> None:
    saved = with_unsubscribe_footer(PAGE, '<p><a href="{{ unsubscribe_url }}">Bye</a></p>')
    assert '<a href="{{ unsubscribe_url }}">Bye</a>' in saved
    assert with_unsubscribe_footer(saved, '<p><a href="{{ unsubscribe_url }}">Bye</a></p>') == saved


def test_the_footered_template_still_checks_clean() -> None:
    assert check_templates("Hi", with_unsubscribe_footer(PAGE), None) == []


def test_a_broken_template_is_an_error_naming_the_part() -> None:
    with pytest.raises(TemplateError, match="html_part"):
        with_unsubscribe_footer("<p>{{ first_name </p>")


def test_derive_text_keeps_merge_tags_and_shows_links() -> None:
    text = derive_text(with_unsubscribe_footer(PAGE))
    assert 'Hi {{ first_name | default("there") }},' in text
    assert "[Shop](https://shop.example.com/?e={{ email }})" in text
    assert "[Unsubscribe]({{ unsubscribe_url }})" in text
    assert "<" not in text.replace("</body>", "")
    assert "color" not in text  # style sheets are not text
    assert text.endswith("\n")
    assert check_templates("Hi", None, text) == []


def test_derive_text_keeps_blocks() -> None:
    text = derive_text("<p>{% if custom.vip %}Welcome, VIP!{% else %}Welcome!{% endif %}</p>")
    assert text == "{% if custom.vip %}Welcome, VIP!{% else %}Welcome!{% endif %}\n"
