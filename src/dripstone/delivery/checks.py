"""The save-time check of a mailing's templates: everything that would stop them from
rendering, found before anything is sent. It prepares the mailing as a send would, so it
builds on both `template` and `prepare`."""

from __future__ import annotations

from html.parser import HTMLParser

from dripstone.delivery.prepare import PreparedMailing
from dripstone.delivery.signing import TrackingTokens
from dripstone.delivery.template import (
    HTML_PART,
    SAMPLE_RECIPIENTS,
    SAMPLE_UNSUBSCRIBE_URL,
    SUBJECT,
    TEXT_PART,
    TemplateError,
    compile_part,
    render_error,
)


def check_templates(subject: str, html: str | None, text: str | None) -> list[str]:
    """Everything that would stop these templates from rendering, one readable line each.

    Each part is compiled, then rendered once with blank and once with filled merge fields,
    so errors that only show at render time (calling an unknown function, a refused
    attribute) are caught when the mailing is saved rather than when it is sent; then the
    whole mailing is prepared and rendered as a send would do it.
    """
    errors: list[str] = []
    if len(subject.splitlines()) > 1:
        errors.append(f"{SUBJECT}: must be a single line")
    for part, source in ((SUBJECT, subject), (HTML_PART, html), (TEXT_PART, text)):
        if source is None:
            continue
        try:
            template = compile_part(part, source)
            for recipient in SAMPLE_RECIPIENTS:
                try:
                    template.render(
                        recipient.merge_fields(), unsubscribe_url=SAMPLE_UNSUBSCRIBE_URL
                    )
                except Exception as exc:  # any failure here would fail the send
                    raise render_error(part, exc) from exc
        except TemplateError as exc:
            errors.append(str(exc))
    if not errors and (html is not None or text is not None):
        errors.extend(_dry_run(subject, html, text))
    return errors


def _dry_run(subject: str, html: str | None, text: str | None) -> list[str]:
    """Prepare and render the mailing as a send would, with throwaway keys."""
    # The HTML processing (link rewriting, CSS inlining) is checked at save time too, so
    # nothing fails first at send.
    tokens = TrackingTokens("dry-run-" + "x" * 32, "https://example.invalid")
    try:
        prepared = PreparedMailing(subject=subject, html=html, text=text, tokens=tokens)
        for recipient in SAMPLE_RECIPIENTS:
            prepared.render(recipient, 1)
    except TemplateError as exc:
        return [str(exc)]
    return []


# Elements that never have an end tag, and those whose end tag HTML lets the writer leave out.
_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
        "keygen",
    ]
)
_OPTIONAL_END = frozenset(
    [
        "html",
        "head",
        "body",
        "p",
        "li",
        "dt",
        "dd",
        "tr",
        "td",
        "th",
        "thead",
        "tbody",
        "tfoot",
        "option",
        "optgroup",
        "colgroup",
        "caption",
        "rt",
        "rp",
    ]
)


class _Balance(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[tuple[str, int]] = []
        self.problems: list[TemplateError] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _VOID and tag not in _OPTIONAL_END:
            self.open.append((tag, self.getpos()[0]))

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or tag in _OPTIONAL_END:
            return
        line = self.getpos()[0]
        if not any(name == tag for name, _ in self.open):
            self.problems.append(TemplateError(HTML_PART, f"</{tag}> closes nothing", line))
            return
        while self.open:
            name, opened = self.open.pop()
            if name == tag:
                return
            self.problems.append(
                TemplateError(
                    HTML_PART,
                    f"<{name}> (opened on line {opened}) is not closed before </{tag}>",
                    line,
                )
            )


def unbalanced_html_tags(html: str) -> list[TemplateError]:
    """HTML elements left open or closed twice, with their lines. Mail clients forgive most
    of them in different ways, so they are warnings, not refusals; a `{% if %}` choosing
    between two opening tags can show here without being wrong."""
    balance = _Balance()
    balance.feed(html)
    balance.close()
    for name, opened in balance.open:
        balance.problems.append(TemplateError(HTML_PART, f"<{name}> is never closed", opened))
    return sorted(balance.problems, key=lambda problem: problem.line or 0)
