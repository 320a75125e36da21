"""Merge tags hidden from the HTML tools while they work, and put back afterwards.

HTML parsers and CSS inliners do not know Jinja. libxml2 percent-encodes the spaces of
`{{ email }}` inside an href, serializers escape the quotes of `default("there")` inside
attributes, and an HTML5 tree builder (css-inline's) moves a `{% if %}` standing between table
rows out of the table. So before any HTML tool sees a template, every Jinja construct is
swapped for an inert ASCII word, and afterwards the words are swapped back.

The constructs are found with Jinja's own lexer, never by pattern-matching the template. A
word is letters and digits only, so no HTML or URL tool rewrites it; it carries a nonce that
the template does not contain, so it cannot be confused with the user's text.

    hidden = hide_merge_tags(environment, source)
    html = some_html_tool(hidden.text)
    source_again = hidden.restore(html)

Where the tree builder would move text (directly inside a table or a row), a word can be put
in an HTML comment instead (`Placeholders.comment`); `restore` unwraps those comments.
"""

from __future__ import annotations

import re
import secrets

from jinja2 import Environment, TemplateSyntaxError


class Placeholders:
    """The Jinja constructs of one template, each standing behind a numbered word."""

    def __init__(self, source: str) -> None:
        nonce = secrets.token_hex(4)
        while nonce in source:
            nonce = secrets.token_hex(4)
        self._prefix = f"mt{nonce}q"
        self._comment_prefix = f"mc{nonce}q"
        self.constructs: list[str] = []
        self.pattern = re.compile(rf"{self._prefix}(\d+)z")
        # Comment-wrapped words are matched first, so their comment markers go with them.
        self._restore_pattern = re.compile(
            rf"<!--{self._comment_prefix}(\d+)z-->|{self._prefix}(\d+)z"
        )

    def add(self, construct: str) -> str:
        """Put `construct` behind a new word and return the word."""
        self.constructs.append(construct)
        return f"{self._prefix}{len(self.constructs) - 1}z"

    def comment(self, word: str) -> str:
        """The text of an HTML comment that `restore` turns back into `word`'s construct."""
        match = self.pattern.fullmatch(word)
        if match is None:
            raise ValueError(f"{word!r} is not a placeholder")
        return f"{self._comment_prefix}{match.group(1)}z"

    def restore(self, text: str) -> str:
        """`text` with every word (bare or comment-wrapped) replaced by its construct."""
        return self._restore_pattern.sub(self._construct, text)

    def _construct(self, match: re.Match[str]) -> str:
        return self.constructs[int(match.group(1) or match.group(2))]


class HiddenTemplate:
    """A template's text with its Jinja constructs behind placeholder words."""

    def __init__(self, text: str, placeholders: Placeholders) -> None:
        self.text = text
        self.placeholders = placeholders

    def restore(self, text: str) -> str:
        """`text` (derived from `self.text`) with the original constructs back in place."""
        return self.placeholders.restore(text)


def hide_merge_tags(environment: Environment, source: str) -> HiddenTemplate:
    """Swap every Jinja construct of `source` for a placeholder word.

    Raises jinja2.TemplateSyntaxError when `source` cannot be lexed (an unclosed tag); a
    template that lexes but does not parse is hidden all the same.
    """
    placeholders = Placeholders(source)
    pieces: list[str] = []
    construct: list[str] | None = None
    # Token values are the source text of each token, so joining a construct's tokens gives
    # back its text; the only change is Jinja's newline normalisation, which is harmless.
    for _line, kind, value in environment.lex(source):
        if construct is None:
            if kind.endswith("_begin"):
                construct = [value]
            else:
                pieces.append(value)
            continue
        construct.append(value)
        if kind.endswith("_end"):
            pieces.append(placeholders.add("".join(construct)))
            construct = None
    if construct is not None:  # the lexer leaves an unclosed tag at the end to the parser
        raise TemplateSyntaxError("unexpected end of template", len(source.splitlines()) or 1)
    return HiddenTemplate("".join(pieces), placeholders)
