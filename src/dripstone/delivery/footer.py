"""The unsubscribe footer every mailing's HTML carries, and the text part derived from HTML.

Both work on the saved templates (merge tags still in them), at save time:

    html_part = with_unsubscribe_footer(html_part)   # on every save; never stacks
    text_part = text_part or derive_text(html_part)  # when the mailing has no text part

The footer sits between two marker comments. Saving an already-footered HTML again replaces
the marked block instead of adding a second one, so editors may round-trip `html_part`
freely; editing inside the markers is lost on the next save, by design. The block goes just
before `</body>`, found by the standard library's HTML tokenizer (not by searching the text)
with merge tags hidden from it, or at the end for a fragment without one. The rest of the
HTML comes back as written, except what Jinja's lexer normalises without changing the
output: CRLF line ends become LF, and whitespace a `{%-`/`-%}` tag strips is gone.

Public interface:
    with_unsubscribe_footer(html, footer=DEFAULT_FOOTER) -> str
    without_unsubscribe_footer(html) -> str
    derive_text(html) -> str
    FOOTER_START, FOOTER_END, DEFAULT_FOOTER
"""

from __future__ import annotations

from html.parser import HTMLParser

from inscriptis import get_text  # type: ignore[import-untyped]
from inscriptis.model.config import ParserConfig  # type: ignore[import-untyped]
from jinja2 import TemplateSyntaxError

from dripstone.delivery.placeholders import HiddenTemplate, hide_merge_tags
from dripstone.delivery.template import (
    HTML_PART,
    TEXT_PART,
    TemplateError,
    compile_part,
    html_environment,
)

FOOTER_START = "<!-- dripstone:unsubscribe-footer -->"
FOOTER_END = "<!-- /dripstone:unsubscribe-footer -->"
DEFAULT_FOOTER = (
    '<div style="margin:24px 0 0;padding:12px 0;font-family:Arial,Helvetica,sans-serif;'
    'font-size:12px;line-height:18px;color:#777777;text-align:center">'
    "You are receiving this email because you subscribed to our list. "
    '<a href="{{ unsubscribe_url }}" style="color:#777777;text-decoration:underline">'
    "Unsubscribe</a></div>"
)


def _hidden(html: str) -> HiddenTemplate:
    compile_part(HTML_PART, html)  # a broken template is refused with its own line numbers
    try:
        return hide_merge_tags(html_environment(), html)
    except TemplateSyntaxError as exc:
        raise TemplateError(HTML_PART, exc.message or "syntax error", exc.lineno) from None


def _remove_marked_blocks(text: str) -> str:
    while (start := text.find(FOOTER_START)) != -1:
        end = text.find(FOOTER_END, start)
        if end == -1:  # a start marker whose end was edited away: drop the marker alone
            text = text[:start] + text[start + len(FOOTER_START) :]
        else:
            text = text[:start] + text[end + len(FOOTER_END) :]
    return text.replace(FOOTER_END, "")


def without_unsubscribe_footer(html: str) -> str:
    """`html` with any footer block (ours, between the markers) taken out."""
    hidden = _hidden(html)
    return hidden.restore(_remove_marked_blocks(hidden.text))


def with_unsubscribe_footer(html: str, footer: str = DEFAULT_FOOTER) -> str:
    """`html` with exactly one unsubscribe footer, just before `</body>`.

    Raises TemplateError if `html` is not a valid template (check_templates first).
    """
    hidden = _hidden(html)
    text = _remove_marked_blocks(hidden.text)
    at = _body_end(text)
    block = FOOTER_START + footer + FOOTER_END
    return hidden.restore(text[:at] + block + text[at:])


class _BodyEndFinder(HTMLParser):
    """Finds where the last `</body>` end tag starts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.position: tuple[int, int] | None = None

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.position = self.getpos()


def _body_end(text: str) -> int:
    finder = _BodyEndFinder()
    finder.feed(text)
    finder.close()
    if finder.position is None:
        return len(text)
    line, column = finder.position
    offset = 0
    for _ in range(line - 1):  # the tokenizer counts lines by "\n" only, as here
        offset = text.index("\n", offset) + 1
    return offset + column


def derive_text(html: str) -> str:
    """A plain-text part for `html`, merge tags kept: links become `[text](url)`.

    Raises TemplateError if the result is not a valid template, which happens only when a
    Jinja block is split between text and a part of the page that has no text (`<style>`).
    """
    hidden = _hidden(html)
    text: str = get_text(hidden.text, ParserConfig(display_links=True))
    lines = (line.rstrip() for line in text.strip().splitlines())
    derived = hidden.restore("\n".join(lines) + "\n")
    try:
        compile_part(TEXT_PART, derived)
    except TemplateError as exc:
        raise TemplateError(
            TEXT_PART, f"cannot be derived from {HTML_PART}: {exc.message}", exc.line
        ) from None
    return derived
