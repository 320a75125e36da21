"""The limits of one render: how much a template may build, how often it may loop, how large
its numbers may grow.

A template is code a tenant wrote, run once per recipient in the server's own process. The
sandbox stops it from reaching anything it should not; these limits stop it from taking all
the memory or CPU: `{{ 'a' * 10**9 }}`, `{{ 9**9**9 }}` and two nested loops of 10,000 fail
at once with a `RenderLimitError` instead of freezing the process.

Every render of a template made by `BoundedSandbox` carries a budget. Each value the template
builds is charged against it *before* it is built, when its size can be known beforehand
(repetition, concatenation, padding, joining, replacing, formatting), and after otherwise;
output is charged as it is written, loop iterations as they run. The numbers are far above
anything a real email needs and far below what could hurt the server:

    MAX_RENDER_SIZE        characters (or items) built and written in one render of one part
    MAX_LOOP_ITERATIONS    loop iterations in one render of one part, nested loops included
    MAX_INTEGER_BITS       the size of any integer a template computes
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from jinja2 import Template, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum
from jinja2.visitor import NodeTransformer

MAX_RENDER_SIZE = 10_000_000
"""Five times the largest part the API accepts (2,000,000 characters), room for link rewriting
and CSS inlining; Gmail clips messages past 102 KB. At most ~40 MB of strings in one render."""

MAX_LOOP_ITERATIONS = 10_000
"""A loop over a recipient's data runs a few dozen times; 10,000 iterations of any template
body take well under a second, where the 10,000 x 10,000 of a hostile template took minutes."""

MAX_INTEGER_BITS = 4096
"""Prices and counts need 64 bits; past a few thousand bits big-number arithmetic costs
milliseconds per operation and `9**9**9` would take minutes and gigabytes."""

_LOOP = "_dripstone_loop"
_CHARGE = "_dripstone_charge"
_SEQUENCES = (str, bytes, list, tuple)
_TEXT = (str, bytes)
_CONTAINERS = (list, tuple, set, frozenset)
# printf-style conversions: `%(name)-10.3f`, `%*d`, `%%`.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_NUMBER = re.compile(r"\d+")
# Escaping may turn one character into six (`'` -> `&#39;`).
_ESCAPE_GROWTH = 6


class RenderLimitError(SecurityError):
    """A render went past one of the limits above."""


class _Budget:
    __slots__ = ("iterations", "size")

    def __init__(self) -> None:
        self.size = 0
        self.iterations = 0

    def charge(self, amount: int) -> None:
        self.size += max(amount, 0)
        if self.size > MAX_RENDER_SIZE:
            raise RenderLimitError(
                f"the template builds more than {MAX_RENDER_SIZE:,} characters in one render"
            )

    def iterate(self) -> None:
        self.iterations += 1
        if self.iterations > MAX_LOOP_ITERATIONS:
            raise RenderLimitError(
                f"the template loops more than {MAX_LOOP_ITERATIONS:,} times in one render"
            )

    @property
    def left(self) -> int:
        return MAX_RENDER_SIZE - self.size


_ACTIVE: ContextVar[_Budget | None] = ContextVar("dripstone_render_budget", default=None)


def _budget() -> _Budget:
    budget = _ACTIVE.get()
    if budget is None:
        raise RenderLimitError("templates are rendered through Template.render only")
    return budget


def weight(value: Any, limit: int = MAX_RENDER_SIZE) -> int:
    """About how many characters `value` takes when written out, counted up to `limit`.

    Containers count their items and what the items hold, so a list repeating one long
    string a thousand times weighs a thousand strings.
    """
    if isinstance(value, str):
        return len(value)
    total = 0
    pending = [value]
    while pending and total <= limit:
        item = pending.pop()
        if isinstance(item, _TEXT):
            total += len(item)
        elif isinstance(item, int):
            total += 1 + item.bit_length() // 3
        elif isinstance(item, _CONTAINERS):
            total += len(item)
            pending.extend(item)
        elif isinstance(item, range):
            total += len(item)
        elif isinstance(item, Mapping):
            total += len(item)
            pending.extend(item.keys())
            pending.extend(item.values())
        else:
            total += 1
    return total


def _materialized(value: Any) -> Any:
    """A lazy sequence (a generator from `map` or `select`) as a list, counted as a loop."""
    if isinstance(value, Iterator):
        return list(_bounded_iteration(value))
    return value


def _bounded_iteration(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _budget()
    for item in iterable:
        budget.iterate()
        yield item


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) else default


def _check_bits(bits: int) -> None:
    if bits > MAX_INTEGER_BITS:
        raise RenderLimitError(
            f"a number in the template would need more than {MAX_INTEGER_BITS:,} bits"
        )


# --- what an operation will build, known before it runs --------------------------------------


def _repetition(left: Any, right: Any) -> int:
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, _SEQUENCES) and isinstance(times, int):
            return weight(sequence) * max(times, 0)
    return 0


def _percent(template: Any, arguments: Any) -> int:
    """`template % arguments`, printf style."""
    if not isinstance(template, str | bytes):
        return 0
    text = template if isinstance(template, str) else template.decode("latin-1")
    if isinstance(arguments, Mapping):
        values = list(arguments.values())
    elif isinstance(arguments, tuple):
        values = list(arguments)
    else:
        values = [arguments]
    size = len(text)
    specs = _PERCENT_SPEC.findall(text)
    for width, precision in specs:
        size += sum(int(n) for n in (width, precision) if n.isdigit())
        if "*" in (width, precision):
            size += sum(abs(v) for v in values if isinstance(v, int))
    heaviest = max((weight(v) for v in values), default=0)
    return size + len(specs) * heaviest * _ESCAPE_GROWTH


def _str_format(template: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    """`template.format(*args, **kwargs)`."""
    size = len(template)
    heaviest = max((weight(v) for v in (*args, *kwargs.values())), default=0)
    numbers = sum(abs(v) for v in (*args, *kwargs.values()) if isinstance(v, int))
    for _, field, spec, _ in string.Formatter().parse(template):
        if field is None:
            continue
        size += heaviest * _ESCAPE_GROWTH + sum(int(n) for n in _NUMBER.findall(spec or ""))
        if spec and "{" in spec:
            size += numbers
    return size


def _padded(text: Any, width: Any = 0, *_: Any) -> int:
    return max(weight(text), _int(width))


def _replaced(text: Any, old: Any = "", new: Any = "", count: Any = None) -> int:
    occurrences = len(text) + 1 if not isinstance(count, int) or count < 0 else count
    return weight(text) + occurrences * weight(new)


def _joined(separator: Any, items: Any) -> int:
    return weight(items) + len(items) * weight(separator) if isinstance(items, list) else 0


def _str_method(method: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    """What a str or bytes method will build, for the methods that can make a value longer."""
    text, name = method.__self__, method.__name__
    if name in ("center", "ljust", "rjust", "zfill"):
        return _padded(text, *args)
    if name == "expandtabs":
        return weight(text) * max(_int(args[0] if args else kwargs.get("tabsize"), 8), 1)
    if name == "replace":
        return _replaced(text, *args, **kwargs)
    if name == "join" and args:
        return _joined(text, args[0])
    if name == "translate" and args and isinstance(args[0], Mapping):
        return weight(text) * (1 + max((weight(v) for v in args[0].values()), default=0))
    return weight(text)


_FILTER_SIZES: dict[str, Callable[..., int]] = {
    "center": lambda value, width=80, **_: max(weight(value), _int(width)),
    "indent": lambda value, width=4, *_, **__: (
        weight(value)
        + (str(value).count("\n") + 1) * (len(width) if isinstance(width, str) else _int(width))
    ),
    "wordwrap": lambda value, width=79, long=True, wrapstring=None, *_, **__: (
        weight(value) * (1 + weight(wrapstring or "\n"))
    ),
    "replace": lambda value, old="", new="", count=None, **_: _replaced(
        str(value), old, new, count
    ),
    "join": lambda value, d="", attribute=None, **_: _joined(d, value),
    "format": lambda value, *args, **kwargs: _percent(str(value), kwargs or args),
    "batch": lambda value, linecount=1, fill_with=None, **_: weight(value) + _int(linecount),
    "slice": lambda value, slices=1, fill_with=None, **_: weight(value) + _int(slices),
    "sum": lambda value, attribute=None, start=0, **_: (
        0
        if isinstance(start, int | float)
        else weight(value) * max(len(value) if isinstance(value, list) else 1, 1)
    ),
    "tojson": lambda value, indent=None, **_: weight(value) * (_ESCAPE_GROWTH + _int(indent)),
    "truncate": lambda value, length=255, killwords=False, end="...", *_, **__: weight(end),
    "urlize": lambda value, *args, **kwargs: weight(value) * (3 + weight(args) + weight(kwargs)),
}


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    _budget().charge(_int(n) * _int(max) * 12)
    return generate_lorem_ipsum(n, html, min, max)


# --- where the budget is charged ---------------------------------------------------------------


class _Instrument(NodeTransformer):
    """Puts the budget's checks into a parsed template: around each loop's iterable, each
    value written out, each operand of `~` and each list, tuple and dict literal. Text
    written as is costs nothing outside loops and macros: there the source bounds it."""

    def __init__(self) -> None:
        self._repeated = 0  # inside how many loops and macros

    def _repeating(self, node: nodes.Node) -> None:
        self._repeated += 1
        try:
            self.generic_visit(node)
        finally:
            self._repeated -= 1

    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802
        self._repeating(node)
        node.iter = _filter(_LOOP, node.iter)
        return node

    def visit_Macro(self, node: nodes.Macro) -> nodes.Node:  # noqa: N802
        self._repeating(node)
        return node

    visit_CallBlock = visit_Macro  # noqa: N815

    def visit_Output(self, node: nodes.Output) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        node.nodes = [
            child
            if isinstance(child, nodes.TemplateData) and not self._repeated
            else _filter(_CHARGE, child)
            for child in node.nodes
        ]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        node.nodes = [_filter(_CHARGE, child) for child in node.nodes]
        return node

    def _literal(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        return _filter(_CHARGE, node)

    visit_List = visit_Dict = _literal  # noqa: N815

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:  # noqa: N802
        if node.ctx != "load":  # an assignment target: `{% for key, value in ... %}`
            return self.generic_visit(node)
        return self._literal(node)


def _filter(name: str, node: nodes.Node) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:  # noqa: N802
        _Instrument().visit(node)
        super().visit_Template(node, frame)


class BoundedTemplate(Template):
    """A template whose every render has its own budget."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        token = _ACTIVE.set(_Budget())
        try:
            return super().render(*args, **kwargs)
        finally:
            _ACTIVE.reset(token)


@pass_context
def _charge(context: Context, value: Any) -> Any:
    budget = _budget()
    budget.charge(len(value) if isinstance(value, str) else weight(value, budget.left))
    return value


@pass_context
def _loop(context: Context, iterable: Any) -> Iterator[Any]:
    return _bounded_iteration(iterable)


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    size = _FILTER_SIZES.get(name)
    passes = getattr(function, "jinja_pass_arg", None)
    passes_name = getattr(passes, "name", None)

    @pass_context
    def bounded(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        value = _materialized(value)
        budget.charge(weight(value, budget.left))
        if args or kwargs:
            args = tuple(_materialized(a) for a in args)
            budget.charge(weight((args, kwargs), budget.left))
        if size is not None:
            budget.charge(size(value, *args, **kwargs))
        if passes_name == "context":
            result = function(context, value, *args, **kwargs)
        elif passes_name == "eval_context":
            result = function(context.eval_ctx, value, *args, **kwargs)
        elif passes_name == "environment":
            result = function(context.environment, value, *args, **kwargs)
        else:
            result = function(value, *args, **kwargs)
        if not isinstance(result, Iterator):
            budget.charge(weight(result, budget.left))
        return result

    return bounded


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with every render held to the limits of this module."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _BoundedCodeGenerator
    template_class = BoundedTemplate

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["lipsum"] = _lipsum
        self.filters[_CHARGE] = _charge
        self.filters[_LOOP] = _loop

    def bound_filters(self) -> None:
        """Hold every filter registered so far to the limits (call after adding filters)."""
        for name, function in list(self.filters.items()):
            if name not in (_CHARGE, _LOOP):
                self.filters[name] = _bounded_filter(name, function)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            _check_bits(left.bit_length() * right if abs(left) > 1 else 1)
        elif operator == "*":
            if isinstance(left, int) and isinstance(right, int):
                _check_bits(left.bit_length() + right.bit_length())
            budget.charge(_repetition(left, right))
        elif operator == "+" and isinstance(left, _SEQUENCES):
            budget.charge(weight(left, budget.left) + weight(right, budget.left))
        elif operator == "%":
            budget.charge(_percent(left, right))
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, int):
            _check_bits(result.bit_length())
        return result

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget = _budget()
        if isinstance(__obj, LoopContext):  # a recursive loop's next level
            args = (_bounded_iteration(args[0]), *args[1:]) if args else args
        else:
            args = tuple(_materialized(a) for a in args)
        if args or kwargs:
            budget.charge(weight((args, kwargs), budget.left))
        method = getattr(__obj, "__wrapped__", __obj)  # str.format, as the sandbox wraps it
        owner = getattr(method, "__self__", None)
        if isinstance(owner, str) and method.__name__ in ("format", "format_map"):
            if method.__name__ == "format_map" and args and isinstance(args[0], Mapping):
                budget.charge(_str_format(owner, (), args[0]))
            else:
                budget.charge(_str_format(owner, args, kwargs))
        elif isinstance(owner, str | bytes):
            budget.charge(_str_method(method, args, kwargs))
        result = super().call(__context, __obj, *args, **kwargs)
        if not isinstance(result, Iterator):
            budget.charge(weight(result, budget.left))
        return result
