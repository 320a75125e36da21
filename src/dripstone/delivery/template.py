"""Merge tags: the sandboxed Jinja2 language of subjects and bodies, and its checks.

A mailing's `subject`, `html_part` and `text_part` are Jinja2 templates rendered once per
recipient with these variables:

    email, first_name, last_name, phone_number   the subscriber's fields (None when blank)
    custom                                       custom field name -> value
    unsubscribe_url                              the recipient's signed unsubscribe link

The rules a marketer can rely on:

- An unknown variable, attribute or key renders as nothing (`{{ custom.nickname }}` for a
  subscriber without one), so a missing field never stops a send.
- `default` also replaces None and blank strings: `{{ first_name | default("there") }}`.
- Syntax errors and anything the sandbox refuses (`{{ email.__class__ }}`) are errors, and
  `check_templates` reports them when the mailing is saved, naming the part and line:
  `html_part line 3: unexpected '}'`.
- HTML output is autoescaped; subject and text are not.

Names starting with `_dripstone` are reserved for the renderer (`prepare.py`).

Public interface:
    Recipient(email, first_name=None, last_name=None, phone_number=None, custom={})
      .merge_fields() -> dict                          the variables, without unsubscribe_url
    TemplateError(part, message, line=None)           a ValueError; str() is the report line
    check_templates(subject, html, text) -> list[str]  empty when the mailing can be sent
    merge_tag_names() -> tuple[str, ...]              the variables every template may use
    unknown_merge_tags(part, source) -> list[TemplateError]   names no recipient has, by line
    compile_part(part, source) -> jinja2.Template      part: SUBJECT, HTML_PART or TEXT_PART
    render_error(part, exception) -> TemplateError     a render failure, with its line
    html_environment(), text_environment(), environment_for(part)   the shared sandboxes
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from types import TracebackType
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dripstone.delivery.bounds import BoundedSandbox

SUBJECT = "subject"
HTML_PART = "html_part"
TEXT_PART = "text_part"
RESERVED_PREFIX = "_dripstone"


@dataclass(frozen=True, slots=True)
class Recipient:
    """The merge fields of one recipient, as the templates see them."""

    email: str
    first_name: str | None = None
    last_name: str | None = None
    phone_number: str | None = None
    custom: Mapping[str, str | None] = field(default_factory=dict)

    def merge_fields(self) -> dict[str, Any]:
        """The template variables for this recipient (without `unsubscribe_url`)."""
        return {
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "phone_number": self.phone_number,
            "custom": self.custom,
        }


# Used by check_templates to render each part once with blank and once with filled fields.
SAMPLE_RECIPIENTS = (
    Recipient(email="someone@example.com"),
    Recipient(
        email="alex@example.com",
        first_name="Alex",
        last_name="Doe",
        phone_number="+15555550100",
        custom={"sample": "value"},
    ),
)
SAMPLE_UNSUBSCRIBE_URL = "https://example.invalid/t/u/sample"
UNSUBSCRIBE_URL = "unsubscribe_url"


def merge_tag_names() -> tuple[str, ...]:
    """The variables every template may use: a recipient's merge fields and `unsubscribe_url`."""
    return (*Recipient(email="").merge_fields(), UNSUBSCRIBE_URL)


class TemplateError(ValueError):
    """A template that cannot be compiled or rendered; str() names the part and line."""

    def __init__(self, part: str, message: str, line: int | None = None) -> None:
        self.part = part
        self.message = message
        self.line = line
        where = f"{part} line {line}" if line else part
        super().__init__(f"{where}: {message}")


class _BlankUndefined(ChainableUndefined):
    """Unknown names render as nothing, but a value the sandbox refused stays an error."""

    __slots__ = ()

    def refused(self) -> bool:
        return self._undefined_exception is SecurityError

    def _raise_if_refused(self) -> None:
        if self.refused():
            self._fail_with_undefined_error()

    def __str__(self) -> str:
        self._raise_if_refused()
        return ""

    def __bool__(self) -> bool:
        self._raise_if_refused()
        return False

    def __iter__(self) -> Iterator[Any]:
        self._raise_if_refused()
        return iter(())

    def __len__(self) -> int:
        self._raise_if_refused()
        return 0


def _default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """Jinja's `default`, extended to None and blank strings (a blank name is no name)."""
    if isinstance(value, Undefined):
        if isinstance(value, _BlankUndefined):
            value._raise_if_refused()
        return default_value
    if value is None or (isinstance(value, str) and not value.strip()):
        return default_value
    if boolean and not value:
        return default_value
    return value


def _blank_none(value: Any) -> Any:
    return "" if value is None else value


def _environment(*, autoescape: bool) -> ImmutableSandboxedEnvironment:
    # Immutable: a template must not be able to change the recipient's `custom` mapping,
    # which the caller may share between recipients.
    environment = BoundedSandbox(
        autoescape=autoescape,
        undefined=_BlankUndefined,
        keep_trailing_newline=True,
        auto_reload=False,
        # A field the subscriber has no value for prints as nothing, never as "None".
        finalize=_blank_none,
    )
    environment.filters["default"] = _default
    environment.filters["d"] = _default
    environment.bound_filters()
    return environment


@cache
def html_environment() -> ImmutableSandboxedEnvironment:
    """The sandbox for `html_part`: autoescaping on."""
    return _environment(autoescape=True)


@cache
def text_environment() -> ImmutableSandboxedEnvironment:
    """The sandbox for `subject` and `text_part`: autoescaping off."""
    return _environment(autoescape=False)


def environment_for(part: str) -> ImmutableSandboxedEnvironment:
    """The sandbox `part` is rendered in."""
    return html_environment() if part == HTML_PART else text_environment()


def compile_part(part: str, source: str) -> Template:
    """Compile a user's template for `part`, or raise TemplateError naming the part and line."""
    environment = environment_for(part)
    try:
        tree = environment.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(part, exc.message or "syntax error", exc.lineno) from None
    except ValueError:  # Python refuses to read integers of more than 4,300 digits
        raise TemplateError(part, "a number in the template is too long") from None
    reserved = sorted(
        {node.name for node in tree.find_all(nodes.Name) if node.name.startswith(RESERVED_PREFIX)}
    )
    if reserved:
        raise TemplateError(part, f"{reserved[0]!r} is a reserved name")
    return environment.from_string(tree)


def render_error(part: str, exc: Exception) -> TemplateError:
    """A render-time exception from a template of `part`, as a TemplateError with its line."""
    message = exc.message if isinstance(exc, JinjaError) and exc.message else str(exc)
    return TemplateError(part, message or type(exc).__name__, _template_line(exc.__traceback__))


def _template_line(traceback: TracebackType | None) -> int | None:
    # Jinja rewrites tracebacks so that template frames carry the template's own line numbers.
    line = None
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == "<template>":
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line


def unknown_merge_tags(part: str, source: str) -> list[TemplateError]:
    """The variables `source` reads that are neither merge fields, nor set in the template, nor
    the sandbox's own (`range`, `loop`): each renders as nothing, which is rarely what the
    writer meant. One per name, at its first line. `source` must compile."""
    environment = environment_for(part)
    tree = environment.parse(source)
    known = {*merge_tag_names(), *environment.globals, "loop", "caller", "varargs", "kwargs"}
    known |= {node.name for node in tree.find_all(nodes.Name) if node.ctx in ("store", "param")}
    found: dict[str, TemplateError] = {}
    for node in tree.find_all(nodes.Name):
        if node.ctx == "load" and node.name not in known and node.name not in found:
            found[node.name] = TemplateError(
                part, f"{node.name!r} is not a merge tag; it renders as nothing", node.lineno
            )
    return sorted(found.values(), key=lambda error: error.line or 0)
