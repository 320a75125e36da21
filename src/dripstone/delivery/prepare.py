"""A mailing prepared once per send, then rendered cheaply for each recipient.

Everything that costs the same for every recipient happens once, in `PreparedMailing(...)`:
the HTML is parsed (lxml) and its CSS inlined (css-inline); the distinct http(s) links are
numbered in document order and each tracked href is replaced by a lookup into the renderer;
the open pixel's slot is added before `</body>`; subject, HTML and text are compiled. What
is left per recipient is three Jinja renders and the signing of that recipient's URLs:

    prepared = PreparedMailing(subject=..., html=..., text=..., tokens=TrackingTokens(...))
    prepared.links                              # {html_id: href as written}, for analytics
    message = prepared.render(recipient, delivery_id)                 # a tracked delivery
    copy = prepared.render(recipient, delivery_id, tracked=False)     # test email, preview
    sample = prepared.render(recipient, None, tracked=False)          # not a delivery at all
    message.subject, .html, .text, .links, .unsubscribe_url           # -> mime.MessageFrame

Links. `html_id` numbers the distinct hrefs of `<a>` and `<area>` in document order; the same
href twice keeps one number. Tracked are hrefs starting with http:// or https://, and hrefs
that start with a merge tag (`{{ custom.link }}`), which are tracked only when they render to
an http(s) URL. Left alone: mailto:, tel:, #anchors, relative and other URLs, any href that
uses `unsubscribe_url`, and links inside HTML comments (Outlook's `<!--[if mso]>`). A link may
contain merge tags (`https://x.test/?e={{ email | urlencode }}`): its click token carries the
URL as rendered for that recipient, and `RenderedMessage.links` says where each recipient's
tracked links pointed.

Tracking. A tracked render rewrites links to signed click URLs and adds the open pixel. An
untracked one leaves links as written and adds no pixel, but a recipient with a delivery
still gets a working unsubscribe link. Without a delivery there is nothing to sign:
`unsubscribe_url` renders as `#`, and `RenderedMessage.unsubscribe_url` is None, so the
message goes without List-Unsubscribe.

CSS. Style sheets are inlined and removed, except `@media` and other at-rules, which stay in
a `<style>`. A style sheet that holds merge tags is kept as written and rendered per
recipient instead. The HTML tools may move text, but a `{% %}` block must come out of them
whole and in order; if inlining would break one, the mailing is sent without inlining (its
style sheets stay), and if even parsing would, TemplateError says so.

Errors. The constructor and `render` raise `template.TemplateError` naming the part. A
mailing that passed `check_templates` (which runs this preparation too) fails at render
time only on data the sample recipients could not foresee. A PreparedMailing does not change
after construction and may be rendered from many threads at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import lxml.html
from css_inline import CSSInliner, InlineError
from jinja2 import Template, TemplateSyntaxError, meta
from markupsafe import Markup

from dripstone.delivery.footer import derive_text
from dripstone.delivery.placeholders import HiddenTemplate, Placeholders, hide_merge_tags
from dripstone.delivery.signing import TrackingTokens
from dripstone.delivery.template import (
    HTML_PART,
    RESERVED_PREFIX,
    SUBJECT,
    TEXT_PART,
    Recipient,
    TemplateError,
    compile_part,
    html_environment,
    render_error,
)

UNSIGNED_UNSUBSCRIBE_URL = "#"
_CLICK = "_dripstone_click"
_PIXEL = "_dripstone_pixel"
_HREF = "_dripstone_href"
_TRACKED_SCHEMES = ("http://", "https://")
_HTML5_DOCTYPE = "<!DOCTYPE html>"
# Text directly inside these is moved out of the table by an HTML5 tree builder.
_TABLE_CONTEXT = frozenset({"table", "thead", "tbody", "tfoot", "tr"})
# Markup.format escapes the URL it is given.
_PIXEL_HTML = Markup(
    '<img src="{src}" width="1" height="1" alt="" '
    'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0">'
)

# Remote stylesheets are never fetched: a template must not make the server reach out.
_INLINER = CSSInliner(keep_at_rules=True, keep_link_tags=True, load_remote_stylesheets=False)


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """One recipient's message content, ready for `mime.build`."""

    subject: str
    html: str | None
    text: str
    links: Mapping[int, str]  # html_id -> where this recipient's link points (tracked only)
    unsubscribe_url: str | None  # the signed URL, for List-Unsubscribe; None: not a delivery


class _Clicks:
    """What the rewritten hrefs use per render: signs click URLs and notes the links.

    A static link is `_dripstone_click[html_id]`, a dynamic one
    `_dripstone_click(html_id, rendered_href)`: in the sandbox an item lookup costs far less
    than a call, and static links are the common case.
    """

    __slots__ = ("_delivery_id", "_static", "_tokens", "links")

    def __init__(
        self, tokens: TrackingTokens, static: Mapping[int, str], delivery_id: int | None
    ) -> None:
        self._tokens = tokens
        self._static = static
        self._delivery_id = delivery_id  # None: untracked, links stay as written
        self.links: dict[int, str] = {}

    def __getitem__(self, html_id: int) -> str:
        url = self._static[html_id]
        if self._delivery_id is None:
            return url
        self.links[html_id] = url
        return self._tokens.click_url(self._delivery_id, html_id, url)

    def __call__(self, html_id: int, target: object) -> str:
        url = str(target).strip()
        if self._delivery_id is None or not url.lower().startswith(_TRACKED_SCHEMES):
            return url
        self.links[html_id] = url
        return self._tokens.click_url(self._delivery_id, html_id, url)


class PreparedMailing:
    """A mailing's templates, prepared once per send for fast per-recipient rendering."""

    def __init__(
        self, *, subject: str, html: str | None, text: str | None, tokens: TrackingTokens
    ) -> None:
        if html is not None and not html.strip():
            html = None
        if html is None and text is None:
            raise TemplateError(TEXT_PART, f"a mailing needs an {HTML_PART} or a {TEXT_PART}")
        self._tokens = tokens
        self._subject = compile_part(SUBJECT, subject)
        self._links: dict[int, str] = {}
        self._static: dict[int, str] = {}
        self._html: Template | None = None
        if html is not None:
            compile_part(HTML_PART, html)  # the user's own errors, with their own line numbers
            try:
                rewritten = self._rewrite_html(html)
            except ValueError as exc:  # lxml refuses control characters HTML cannot hold
                raise TemplateError(HTML_PART, f"cannot be parsed as HTML: {exc}") from None
            self._html = _compile_prepared(rewritten)
        self._text = compile_part(TEXT_PART, text if text is not None else derive_text(html or ""))

    @property
    def links(self) -> Mapping[int, str]:
        """html_id -> the link's href as written (merge tags included), in document order."""
        return MappingProxyType(self._links)

    def render(
        self, recipient: Recipient, delivery_id: int | None, *, tracked: bool = True
    ) -> RenderedMessage:
        """`recipient`'s message; tracked needs the delivery the tokens will name."""
        if tracked and delivery_id is None:
            raise ValueError("a tracked message needs its delivery_id")
        fields = recipient.merge_fields()
        unsubscribe_url = None if delivery_id is None else self._tokens.unsubscribe_url(delivery_id)
        fields["unsubscribe_url"] = unsubscribe_url or UNSIGNED_UNSUBSCRIBE_URL
        clicks = _Clicks(self._tokens, self._static, delivery_id if tracked else None)
        fields[_CLICK] = clicks
        fields[_PIXEL] = (
            _PIXEL_HTML.format(src=self._tokens.open_url(delivery_id))
            if tracked and delivery_id is not None and self._html is not None
            else ""
        )
        # A subject is one line whatever the merge fields hold; mime.build refuses the rest.
        subject = " ".join(_render(SUBJECT, self._subject, fields).splitlines()).strip()
        html = None if self._html is None else _render(HTML_PART, self._html, fields)
        text = _render(TEXT_PART, self._text, fields)
        return RenderedMessage(subject, html, text, MappingProxyType(clicks.links), unsubscribe_url)

    def _rewrite_html(self, html: str) -> str:
        environment = html_environment()
        hidden = hide_merge_tags(environment, html)
        placeholders = hidden.placeholders
        # No implied HTML 4 doctype from libxml2: a page without one gets <!DOCTYPE html> below.
        parser = lxml.html.HTMLParser(default_doctype=False)
        document = lxml.html.document_fromstring(hidden.text, parser, ensure_head_body=True)
        for element in list(document.iter(*_TABLE_CONTEXT)):
            _words_in_comments(element, placeholders)
        for style in list(document.iter("style")):
            if placeholders.pattern.search(style.text or ""):
                _keep_as_written(style, hidden)
        distinct: dict[str, int] = {}
        for anchor in document.iter("a", "area"):
            href = anchor.get("href")
            construct = None if href is None else self._tracked_href(href, placeholders, distinct)
            if construct is not None:
                anchor.set("href", placeholders.add(construct))
        body = document.find("body")
        assert body is not None  # ensure_head_body
        _append_text(body, placeholders.add(_expression(_PIXEL)))
        doctype = document.getroottree().docinfo.doctype or _HTML5_DOCTYPE
        serialized = lxml.html.tostring(
            document, encoding="unicode", method="html", doctype=doctype
        )
        # The HTML tools may move text; they must not reorder, drop or repeat a {% %} block.
        # Without inlining, a template keeps its <style> sheet, which most clients apply.
        blocks = _blocks(html)
        with contextlib.suppress(InlineError):
            inlined = hidden.restore(_INLINER.inline(serialized))
            if _blocks(inlined) == blocks:
                # The inliner writes every doctype as the HTML5 one; email templates often
                # choose XHTML 1.0 on purpose (Outlook's rendering mode), so put theirs back.
                return doctype + inlined.removeprefix(_HTML5_DOCTYPE)
        plain = hidden.restore(serialized)
        if _blocks(plain) != blocks:
            raise TemplateError(
                HTML_PART,
                "its {% %} blocks do not survive HTML parsing; "
                "keep each block around whole elements or inside one text",
            )
        return plain

    def _tracked_href(
        self, href: str, placeholders: Placeholders, distinct: dict[str, int]
    ) -> str | None:
        """The construct that replaces a tracked href, or None to leave the href alone."""
        source = placeholders.restore(href).strip()
        first_tag = placeholders.pattern.search(href)
        if first_tag is None:
            if not source.lower().startswith(_TRACKED_SCHEMES):
                return None
        else:
            prefix = href[: first_tag.start()].strip().lower()
            if prefix and not prefix.startswith(_TRACKED_SCHEMES):
                return None
            try:
                names = meta.find_undeclared_variables(html_environment().parse(source))
            except TemplateSyntaxError:
                return None  # a block that opens in the href and closes outside it
            if "unsubscribe_url" in names:
                return None
        html_id = distinct.setdefault(source, len(distinct) + 1)
        self._links[html_id] = source
        if first_tag is None:
            self._static[html_id] = source
            return _expression(f"{_CLICK}[{html_id}]")
        # Rendered with autoescaping off: the token must carry the URL, not its HTML escaping.
        return (
            _statement(f"set {_HREF}")
            + _AUTOESCAPE_OFF
            + source
            + _AUTOESCAPE_END
            + _SET_END
            + _expression(f"{_CLICK}({html_id}, {_HREF})")
        )


def _expression(code: str) -> str:
    return "{{ " + code + " }}"


def _statement(code: str) -> str:
    return "{% " + code + " %}"


_AUTOESCAPE_OFF = _statement("autoescape false")
_AUTOESCAPE_END = _statement("endautoescape")
_SET_END = _statement("endset")
_OWN_STATEMENTS = frozenset({_AUTOESCAPE_OFF, _AUTOESCAPE_END, _SET_END})


def _compile_prepared(source: str) -> Template:
    try:
        return html_environment().from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(HTML_PART, exc.message or "syntax error", exc.lineno) from None


def _render(part: str, template: Template, fields: dict[str, Any]) -> str:
    try:
        return template.render(fields)
    except Exception as exc:  # whatever a template raises, the caller needs the part named
        raise render_error(part, exc) from exc


def _blocks(source: str) -> list[str]:
    """The template's {% %} statements in order, without the renderer's own."""
    constructs = hide_merge_tags(html_environment(), source).placeholders.constructs
    return [
        construct
        for construct in constructs
        if construct.startswith("{%")
        and RESERVED_PREFIX not in construct
        and construct not in _OWN_STATEMENTS
    ]


def _keep_as_written(style: lxml.html.HtmlElement, hidden: HiddenTemplate) -> None:
    """Keep a style sheet with merge tags out of the inliner: it is rendered as written."""
    placeholders = hidden.placeholders
    written = hidden.restore(lxml.html.tostring(style, encoding="unicode", with_tail=False))
    comment = lxml.html.HtmlComment(placeholders.comment(placeholders.add(written)))
    tail = style.tail
    parent = style.getparent()
    assert parent is not None
    parent.replace(style, comment)
    comment.tail = tail


def _append_text(element: lxml.html.HtmlElement, text: str) -> None:
    if len(element):
        last = element[-1]
        last.tail = (last.tail or "") + text
    else:
        element.text = (element.text or "") + text


def _words_in_comments(element: lxml.html.HtmlElement, placeholders: Placeholders) -> None:
    """Wrap the placeholder words standing directly inside a table element in comments.

    An HTML5 tree builder moves text found between rows out in front of the table, which
    would put `{% for %}`/`{% endfor %}` around nothing; comments stay where they are.
    """
    pieces = _split_words(element.text, placeholders)
    if pieces is not None:
        element.text = pieces[0]
        for index, (word, tail) in enumerate(pieces[1]):
            comment = lxml.html.HtmlComment(placeholders.comment(word))
            comment.tail = tail
            element.insert(index, comment)
    for child in list(element):
        pieces = _split_words(child.tail, placeholders)
        if pieces is None:
            continue
        child.tail = pieces[0]
        at = element.index(child)
        for offset, (word, tail) in enumerate(pieces[1], start=1):
            comment = lxml.html.HtmlComment(placeholders.comment(word))
            comment.tail = tail
            element.insert(at + offset, comment)


def _split_words(
    text: str | None, placeholders: Placeholders
) -> tuple[str, list[tuple[str, str]]] | None:
    """`text` as (leading text, [(word, text after it)]), or None when it holds no word."""
    if not text:
        return None
    matches = list(placeholders.pattern.finditer(text))
    if not matches:
        return None
    following = [
        (match.group(0), text[match.end() : nxt.start() if nxt else len(text)])
        for match, nxt in zip(matches, [*matches[1:], None], strict=True)
    ]
    return text[: matches[0].start()], following
