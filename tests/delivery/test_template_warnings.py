"""The editor's warnings: merge tags no recipient has, HTML elements left open or closed twice.
Neither stops a save; each names its part and line."""

from __future__ import annotations

from dripstone.delivery.checks import unbalanced_html_tags
from dripstone.delivery.template import HTML_PART, TEXT_PART, merge_tag_names, unknown_merge_tags


def test_the_merge_tags_are_the_recipient_fields_and_the_unsubscribe_link() -> None:
    assert merge_tag_names() == (
        "email",
        "first_name",
        "last_name",
        "phone_number",
        "custom",
        "unsubscribe_url",
    )


def test_a_misspelt_merge_tag_is_named_once_at_its_first_line() -> None:
    source = "Hi {{ frist_name }}\n{{ email }}\n{{ frist_name }} {{ custom.plan }}"
    found = [str(error) for error in unknown_merge_tags(TEXT_PART, source)]
    assert found == ["text_part line 1: 'frist_name' is not a merge tag; it renders as nothing"]


def test_names_the_template_sets_loops_over_or_the_sandbox_gives_are_not_unknown() -> None:
    source = (
        "{% set greeting = 'Hi' %}{{ greeting }}"
        "{% for n in range(3) %}{{ loop.index }}{{ n }}{% endfor %}"
        "{{ unsubscribe_url }}"
    )
    assert unknown_merge_tags(HTML_PART, source) == []


def test_elements_left_open_or_closed_twice_are_found_with_their_lines() -> None:
    source = "<div>\n<span>a\n</div>\n</div>\n<table><tr><td>x</table>\n<br><img src=x>\n<em>"
    assert [str(problem) for problem in unbalanced_html_tags(source)] == [
        "html_part line 3: <span> (opened on line 2) is not closed before </div>",
        "html_part line 4: </div> closes nothing",
        "html_part line 7: <em> is never closed",
    ]


def test_html_whose_end_tags_may_be_left_out_is_balanced() -> None:
    assert unbalanced_html_tags("<ul><li>one<li>two</ul><p>a<p>b<br>") == []
