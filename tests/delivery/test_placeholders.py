"""Merge tags hidden behind placeholder words, and restored exactly."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jinja2 import TemplateSyntaxError

from dripstone.delivery.placeholders import hide_merge_tags
from dripstone.delivery.template import html_environment

PIECES = st.sampled_from(
    [
        "<p>",
        "</p>",
        '<a href="',
        '">',
        "&amp;",
        " ",
        "\n",
        "text",
        "}",  # a lone "{" could join the next piece into a tag
        "%",
        "#",
        "{{ first_name }}",
        '{{ first_name | default("there") }}',
        "{{ '}}' }}",
        "{% if custom.vip %}",
        "{% endif %}",
        "{# a comment with {{ and }} #}",
        "{% raw %}{{ not a tag }}{% endraw %}",
    ]
)


@given(st.lists(PIECES, max_size=30))
def test_restoring_gives_back_the_template(pieces: list[str]) -> None:
    source = "".join(pieces)
    hidden = hide_merge_tags(html_environment(), source)
    assert "{{" not in hidden.text
    assert "{%" not in hidden.text
    assert hidden.restore(hidden.text) == source


def test_words_are_plain_letters_and_digits() -> None:
    hidden = hide_merge_tags(html_environment(), 'a {{ b }} c {% if d %}e{% endif %} "f"')
    words = hidden.placeholders.pattern.findall(hidden.text)
    assert len(words) == 3
    assert re.fullmatch(r'a [a-z0-9]+ c [a-z0-9]+e[a-z0-9]+ "f"', hidden.text)


def test_a_word_can_stand_in_a_comment() -> None:
    hidden = hide_merge_tags(html_environment(), "<table>{% if x %}<tr></tr>{% endif %}</table>")
    placeholders = hidden.placeholders
    words = [match.group(0) for match in placeholders.pattern.finditer(hidden.text)]
    commented = hidden.text
    for word in words:
        commented = commented.replace(word, f"<!--{placeholders.comment(word)}-->")
    assert hidden.restore(commented) == "<table>{% if x %}<tr></tr>{% endif %}</table>"
    assert hidden.restore("<!-- kept -->") == "<!-- kept -->"


def test_the_nonce_avoids_the_template_text() -> None:
    first = hide_merge_tags(html_environment(), "{{ a }}")
    lookalike = first.text  # a template that happens to contain a word of another
    second = hide_merge_tags(html_environment(), lookalike + " {{ b }}")
    assert second.restore(second.text) == lookalike + " {{ b }}"


def test_an_unclosed_tag_is_a_syntax_error() -> None:
    with pytest.raises(TemplateSyntaxError):
        hide_merge_tags(html_environment(), "<p>{{ first_name </p>")
