"""PreparedMailing: link numbering, click and open tracking, unsubscribe, CSS, rendering."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import lxml.html
import pytest

from dripstone.delivery.checks import check_templates
from dripstone.delivery.footer import with_unsubscribe_footer
from dripstone.delivery.prepare import UNSIGNED_UNSUBSCRIBE_URL, PreparedMailing
from dripstone.delivery.signing import Click, TrackingTokens
from dripstone.delivery.template import Recipient, TemplateError
from tests.delivery.conftest import PUBLIC_URL

LINKS_PAGE = """<!DOCTYPE html>
<html>
<head><style>
a { color: #0b5394; }
@media (max-width: 600px) { p { font-size: 18px; } }
</style></head>
<body>
<p>Hi {{ first_name | default("there") }}</p>
<a href="https://shop.example.com/spring">Spring</a>
<a href="mailto:help@acme.test">Mail</a>
<a href="tel:+15555550100">Call</a>
<a href="#top">Top</a>
<a href="/relative/page">Relative</a>
<a href="https://shop.example.com/?e={{ email | urlencode }}&amp;src=news">You</a>
<a href="https://shop.example.com/spring">Spring again</a>
<a href="HTTP://SHOP.EXAMPLE.COM/upper">Upper</a>
<a href="{{ custom.link }}">Yours</a>
<map name="m"><area href="https://maps.example.com/" alt="map"></map>
<a href="{{ unsubscribe_url }}">Unsubscribe</a>
<a>No link</a>
</body>
</html>"""

JANE = Recipient(
    email="jane+news@example.com",
    first_name="Jane",
    custom={"link": "https://partner.example.net/x?y=1&z=2"},
)
PLACEHOLDER = re.compile(r"m[tc][0-9a-f]{8}q\d+z")


def hrefs(html: str) -> list[str]:
    document = lxml.html.document_fromstring(html)
    return [element.get("href", "") for element in document.iter("a", "area")]


def click_of(tokens: TrackingTokens, href: str) -> Click | None:
    prefix = PUBLIC_URL + "/t/c/"
    return tokens.verify_click(href.removeprefix(prefix)) if href.startswith(prefix) else None


def prepare(tokens: TrackingTokens, html: str | None, text: str | None = None) -> PreparedMailing:
    return PreparedMailing(subject="Hi {{ first_name }}", html=html, text=text, tokens=tokens)


def test_distinct_http_links_are_numbered_in_document_order(tokens: TrackingTokens) -> None:
    prepared = prepare(tokens, LINKS_PAGE)
    assert dict(prepared.links) == {
        1: "https://shop.example.com/spring",
        2: "https://shop.example.com/?e={{ email | urlencode }}&src=news",
        3: "HTTP://SHOP.EXAMPLE.COM/upper",
        4: "{{ custom.link }}",
        5: "https://maps.example.com/",
    }


def test_tracked_links_become_signed_click_urls(tokens: TrackingTokens) -> None:
    message = prepare(tokens, LINKS_PAGE).render(JANE, 42)
    found = hrefs(message.html or "")
    you = "https://shop.example.com/?e=jane%2Bnews%40example.com&src=news"
    assert [click_of(tokens, href) for href in found] == [
        Click(42, 1, "https://shop.example.com/spring"),
        None,
        None,
        None,
        None,
        Click(42, 2, you),
        Click(42, 1, "https://shop.example.com/spring"),
        Click(42, 3, "HTTP://SHOP.EXAMPLE.COM/upper"),
        Click(42, 4, "https://partner.example.net/x?y=1&z=2"),
        Click(42, 5, "https://maps.example.com/"),
        None,
        None,
    ]
    assert found[1:5] == ["mailto:help@acme.test", "tel:+15555550100", "#top", "/relative/page"]
    assert dict(message.links) == {
        1: "https://shop.example.com/spring",
        2: you,
        3: "HTTP://SHOP.EXAMPLE.COM/upper",
        4: "https://partner.example.net/x?y=1&z=2",
        5: "https://maps.example.com/",
    }


def test_the_unsubscribe_link_is_signed_and_left_untracked(tokens: TrackingTokens) -> None:
    message = prepare(tokens, LINKS_PAGE).render(JANE, 42)
    unsubscribe = hrefs(message.html or "")[10]
    assert unsubscribe == tokens.unsubscribe_url(42) == message.unsubscribe_url
    assert tokens.verify_unsubscribe(unsubscribe.removeprefix(PUBLIC_URL + "/t/u/")) == 42


def test_a_merge_tag_link_that_is_not_http_is_left_alone(tokens: TrackingTokens) -> None:
    mailer = Recipient(email="x@example.com", custom={"link": "mailto:x@example.com"})
    message = prepare(tokens, LINKS_PAGE).render(mailer, 42)
    assert hrefs(message.html or "")[8] == "mailto:x@example.com"
    assert 4 not in message.links


def test_the_open_pixel_is_the_last_thing_in_the_body(tokens: TrackingTokens) -> None:
    message = prepare(tokens, with_unsubscribe_footer(LINKS_PAGE)).render(JANE, 42)
    body = lxml.html.document_fromstring(message.html or "").find("body")
    assert body is not None
    pixel = body[-1]
    assert pixel.tag == "img"
    assert (pixel.get("width"), pixel.get("height"), pixel.get("alt")) == ("1", "1", "")
    src = pixel.get("src", "")
    assert tokens.verify_open(src.removeprefix(PUBLIC_URL + "/t/o/").removesuffix(".gif")) == 42
    assert (message.html or "").count("/t/o/") == 1


def test_an_untracked_copy_has_no_pixel_and_plain_links(tokens: TrackingTokens) -> None:
    message = prepare(tokens, LINKS_PAGE).render(JANE, 42, tracked=False)
    html = message.html or ""
    assert "/t/o/" not in html
    assert "/t/c/" not in html
    found = hrefs(html)
    assert found[0] == "https://shop.example.com/spring"
    assert found[5] == "https://shop.example.com/?e=jane%2Bnews%40example.com&src=news"
    assert found[8] == "https://partner.example.net/x?y=1&z=2"
    assert found[10] == tokens.unsubscribe_url(42)  # still a working unsubscribe link
    assert message.links == {}


def test_without_a_delivery_nothing_is_signed(tokens: TrackingTokens) -> None:
    message = prepare(tokens, LINKS_PAGE, "Bye: {{ unsubscribe_url }}").render(
        JANE, None, tracked=False
    )
    assert "/t/" not in (message.html or "")
    assert hrefs(message.html or "")[10] == UNSIGNED_UNSUBSCRIBE_URL
    assert message.text == "Bye: #"
    assert message.unsubscribe_url is None


def test_tracking_needs_a_delivery(tokens: TrackingTokens) -> None:
    with pytest.raises(ValueError, match="delivery_id"):
        prepare(tokens, LINKS_PAGE).render(JANE, None)


def test_css_is_inlined_once_and_media_queries_kept(tokens: TrackingTokens) -> None:
    html = prepare(tokens, LINKS_PAGE).render(JANE, 42).html or ""
    document = lxml.html.document_fromstring(html)
    assert all("color: #0b5394" in (a.get("style") or "") for a in document.iter("a"))
    style = document.find(".//style")
    assert style is not None
    assert "@media" in (style.text or "")
    assert "a {" not in (style.text or "")


def test_merge_tags_render_per_recipient_and_are_escaped(tokens: TrackingTokens) -> None:
    page = (
        '<p title="{{ first_name | default("friend") }}">Hi {{ first_name | default("there") }}</p>'
    )
    prepared = prepare(tokens, page)
    odd = prepared.render(Recipient(email="x@example.com", first_name='<"Jo">'), 1).html or ""
    blank = prepared.render(Recipient(email="y@example.com", first_name=" "), 2).html or ""
    assert 'title="&lt;&#34;Jo&#34;&gt;">Hi &lt;&#34;Jo&#34;&gt;</p>' in odd
    assert 'title="friend">Hi there</p>' in blank
    assert not PLACEHOLDER.search(odd)


def test_blocks_between_table_rows_stay_in_the_table(tokens: TrackingTokens) -> None:
    page = """<table id="t"><tr><td>first</td></tr>
{% if custom.vip %}<tr><td>vip</td></tr>{% endif %}
{% for n in ['a', 'b'] %}<tr><td>row {{ n }}</td></tr>{% endfor %}
</table>"""
    prepared = prepare(tokens, page)
    vip = Recipient(email="v@example.com", custom={"vip": "yes"})
    document = lxml.html.document_fromstring(prepared.render(vip, 1).html or "")
    cells = [td.text for td in document.get_element_by_id("t").iter("td")]
    assert cells == ["first", "vip", "row a", "row b"]
    plain = lxml.html.document_fromstring(prepared.render(JANE, 2).html or "")
    assert [td.text for td in plain.get_element_by_id("t").iter("td")] == [
        "first",
        "row a",
        "row b",
    ]


def test_subject_is_one_line_whatever_the_fields_hold(tokens: TrackingTokens) -> None:
    sneaky = Recipient(email="x@example.com", first_name="Jane\r\nBcc: all@example.com")
    message = prepare(tokens, LINKS_PAGE).render(sneaky, 1)
    assert message.subject == "Hi Jane Bcc: all@example.com"


def test_a_missing_text_part_is_derived_from_the_html(tokens: TrackingTokens) -> None:
    message = prepare(tokens, with_unsubscribe_footer(LINKS_PAGE)).render(JANE, 42)
    assert "Hi Jane" in message.text
    assert f"[Unsubscribe]({tokens.unsubscribe_url(42)})" in message.text
    assert "[Spring](https://shop.example.com/spring)" in message.text


def test_a_text_only_mailing(tokens: TrackingTokens) -> None:
    for html in (None, "  \n"):
        message = prepare(tokens, html, "Hello {{ first_name }}").render(JANE, 42)
        assert (message.html, message.text, dict(message.links)) == (None, "Hello Jane", {})


def test_a_mailing_needs_some_body(tokens: TrackingTokens) -> None:
    with pytest.raises(TemplateError, match="html_part or a text_part"):
        prepare(tokens, None, None)


def test_template_errors_name_the_part(tokens: TrackingTokens) -> None:
    with pytest.raises(TemplateError, match=r"^html_part line 2: "):
        prepare(tokens, "<p>\n{{ first_name }</p>")
    prepared = prepare(tokens, "<p>ok</p>\n<p>{{ custom.count + 1 }}</p>")
    with pytest.raises(TemplateError, match=r"^html_part line 2: "):
        prepared.render(Recipient(email="x@example.com", custom={"count": "three"}), 1)


def test_rendering_from_many_threads(tokens: TrackingTokens) -> None:
    prepared = prepare(tokens, LINKS_PAGE)
    people = [Recipient(email=f"p{i}@example.com", first_name=f"P{i}") for i in range(200)]

    def render(index: int) -> tuple[int, str]:
        return index, prepared.render(people[index], index + 1).html or ""

    with ThreadPoolExecutor(max_workers=4) as pool:
        for index, html in pool.map(render, range(200)):
            assert f"Hi P{index}</p>" in html
            click = click_of(tokens, hrefs(html)[5])
            assert click == Click(
                index + 1, 2, f"https://shop.example.com/?e=p{index}%40example.com&src=news"
            )


def test_a_style_sheet_with_merge_tags_is_rendered_as_written(tokens: TrackingTokens) -> None:
    page = """<html><head>
<style>h1 { color: {{ custom.brand | default("navy") }}; }
{% if custom.big %}p { font-size: 20px; }{% endif %}</style>
<style>p { margin: 0; }</style>
</head><body><h1>News</h1><p>Hello</p></body></html>"""
    prepared = prepare(tokens, page)
    big = Recipient(email="b@example.com", custom={"brand": "teal", "big": "yes"})
    html = prepared.render(big, 1).html or ""
    assert "h1 { color: teal; }\np { font-size: 20px; }</style>" in html
    assert '<p style="margin: 0;">Hello</p>' in html  # the plain sheet is still inlined
    plain = prepared.render(JANE, 2).html or ""
    assert "h1 { color: navy; }\n</style>" in plain
    assert check_templates("Hi", page, None) == []


def test_inlining_that_would_break_a_block_is_left_out(tokens: TrackingTokens) -> None:
    # The inliner rewrites a style attribute it has rules for, and would lose the blocks.
    page = (
        "<style>p { color: red; }</style>"
        '<p style="{% if custom.big %}font-size: 20px;{% endif %}">x</p>'
    )
    prepared = prepare(tokens, page)
    big = Recipient(email="b@example.com", custom={"big": "yes"})
    assert '<p style="font-size: 20px;">x</p>' in (prepared.render(big, 1).html or "")
    assert '<p style="">x</p>' in (prepared.render(JANE, 2).html or "")
    assert check_templates("Hi", page, None) == []


def test_the_doctype_is_kept(tokens: TrackingTokens) -> None:
    xhtml = (
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
        '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">'
    )
    assert (prepare(tokens, xhtml + "<p>x</p>").render(JANE, 1).html or "").startswith(xhtml)
    assert (prepare(tokens, "<p>x</p>").render(JANE, 1).html or "").startswith("<!DOCTYPE html>")
