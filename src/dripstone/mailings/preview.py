"""A mailing as typed, before it is saved, rendered for one recipient the way a send renders
it: the same checks as saving, the unsubscribe footer, merge tags filled, links rewritten to
tracking URLs. Nothing is written and nothing is sent."""

from __future__ import annotations

from dataclasses import dataclass

from dripstone.db import AccountScope
from dripstone.delivery import pipeline
from dripstone.delivery.checks import check_templates, unbalanced_html_tags
from dripstone.delivery.dispatcher import recipient_of
from dripstone.delivery.footer import with_unsubscribe_footer
from dripstone.delivery.prepare import PreparedMailing, RenderedMessage
from dripstone.delivery.template import (
    HTML_PART,
    SUBJECT,
    TEXT_PART,
    TemplateError,
    merge_tag_names,
    unknown_merge_tags,
)
from dripstone.subscribers.models import Subscriber

# No delivery has id 0 (ids start at 1): a preview's links are signed as a send signs them,
# and a click on one redirects like any other, but there is no delivery to count it against.
PREVIEW_DELIVERY_ID = 0


@dataclass(frozen=True)
class Preview:
    """What the editor shows: the message, or why it cannot be rendered; and the warnings."""

    message: RenderedMessage | None
    errors: list[str]
    warnings: list[str]


def preview_mailing(
    scope: AccountScope, *, subject: str, html: str | None, text: str | None, email: str
) -> Preview:
    """Render the typed templates for the account's subscriber `email` (or the address alone)
    as a tracked send would; errors are the ones saving would refuse, with their lines."""
    if html is None and text is None:
        return Preview(None, ["html_part: a mailing needs an html_part or a text_part"], [])
    errors = check_templates(subject or "subject", html, text)
    if errors:
        return Preview(None, errors, [])
    warnings = template_warnings(subject, html, text)
    recipient = recipient_of(scope.session, scope.account_id, email)
    try:
        prepared = PreparedMailing(
            subject=subject,
            html=with_unsubscribe_footer(html) if html is not None else None,
            text=text,
            tokens=pipeline.pipeline().tokens,
        )
        message = prepared.render(recipient, PREVIEW_DELIVERY_ID)
    except TemplateError as exc:  # data of this subscriber the sample recipients lacked
        return Preview(None, [str(exc)], warnings)
    return Preview(message, [], warnings)


def template_warnings(subject: str, html: str | None, text: str | None) -> list[str]:
    """What may not be meant in templates that render: merge tags no recipient has, HTML
    elements left open or closed twice; each with its part and line. The templates must
    pass check_templates."""
    warnings = [
        str(warning)
        for part, source in ((SUBJECT, subject), (HTML_PART, html), (TEXT_PART, text))
        if source
        for warning in unknown_merge_tags(part, source)
    ]
    return warnings + [str(problem) for problem in unbalanced_html_tags(html or "")]


def preview_subscribers(scope: AccountScope, items: int = 8) -> list[str]:
    """A few of the account's addresses to preview with (the oldest first)."""
    stmt = (
        scope.select(Subscriber, Subscriber.email)
        .where(Subscriber.email.is_not(None))
        # The (account, created_at, id) index: cheap however many subscribers.
        .order_by(Subscriber.created_at, Subscriber.id)
        .limit(items)
    )
    return [email for email in scope.session.scalars(stmt) if email]


def merge_tags() -> tuple[str, ...]:
    """The merge tags a mailing may use, as written (`custom` is read as `custom.NAME`)."""
    return tuple("custom.NAME" if name == "custom" else name for name in merge_tag_names())
