"""TICKscript alert tasks: `stream|from()...|alert()...` scripts turned into a TaskSpec.

The script is parsed with the grammar in tickscript.lark, then evaluated the way Kapacitor's
tick/eval.go does it: statements run in order, vars are immutable, identifiers inside a lambda
take the value their var has when the lambda is evaluated, property methods (`.crit(...)`) set
fields on the node they are called on, and handler methods (`.kafka()`) open a handler whose own
properties follow, with the alert's properties still reachable after it. Only the alert-task
subset is accepted; anything else is a TickError naming the unsupported node or property and
where it is.
"""

from __future__ import annotations

import functools
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from kafkaops.alert import expr
from kafkaops.alert.expr import CompiledExpr, Duration, Regex
from kafkaops.kafka.partitioners import PartitionAlgorithm

DEFAULT_ID_TEMPLATE = "{{ .Name }}:{{ .Group }}"
DEFAULT_MESSAGE_TEMPLATE = "{{ .ID }} is {{ .Level }}"
DEFAULT_DETAILS_TEMPLATE = "{{ json . }}"
DEFAULT_HISTORY = 21
DEFAULT_LOG_MODE = 0o600
_INT64_MAX = (1 << 63) - 1


class TickError(ValueError):
    """A script outside the supported subset or with a mistake; line/column are 1-based."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        return f"line {self.line} char {self.column}: {self.message}"


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """One `.kafka()`, `.log()`, `.post()`, `.exec()` or `.tcp()` handler of the alert.

    `options` uses the keys of Kapacitor's topic-handler files for the same kind (kafka: cluster,
    topic, template, disablePartitionById, partitionAlgorithm; log: path, mode; post: url,
    headers; exec: prog, args; tcp: address), so one factory can build handlers from either.
    Existence of the Kafka cluster is for the caller to check; line/column locate the handler.
    """

    kind: str
    options: dict[str, Any]
    line: int = 0
    column: int = 0


@dataclass(slots=True)
class AlertSpec:
    """The properties of `|alert()`; unset templates hold Kapacitor's defaults."""

    id: str = DEFAULT_ID_TEMPLATE
    message: str = DEFAULT_MESSAGE_TEMPLATE
    details: str = DEFAULT_DETAILS_TEMPLATE
    info: CompiledExpr | None = None
    warn: CompiledExpr | None = None
    crit: CompiledExpr | None = None
    info_reset: CompiledExpr | None = None
    warn_reset: CompiledExpr | None = None
    crit_reset: CompiledExpr | None = None
    state_changes_only: bool = False
    state_changes_only_max: timedelta | None = None
    """`.stateChangesOnly(d)`: re-send an unchanged level at most every d (None: never)."""
    flapping: tuple[float, float] | None = None
    """(low, high) thresholds of `.flapping()`."""
    history: int = DEFAULT_HISTORY
    no_recoveries: bool = False
    topic: str | None = None
    level_tag: str | None = None
    id_tag: str | None = None
    level_field: str | None = None
    id_field: str | None = None
    message_field: str | None = None
    duration_field: str | None = None
    handlers: list[HandlerSpec] = field(default_factory=list)

    @property
    def levels(self) -> tuple[CompiledExpr | None, ...]:
        """Level expressions indexed by level number (OK=0 has none, INFO=1 .. CRITICAL=3)."""
        return (None, self.info, self.warn, self.crit)

    @property
    def resets(self) -> tuple[CompiledExpr | None, ...]:
        """Reset expressions indexed like `levels`."""
        return (None, self.info_reset, self.warn_reset, self.crit_reset)


@dataclass(slots=True)
class TaskSpec:
    """What an alert task does: which points it reads and how it alerts on them."""

    measurement: str | None
    """None reads every measurement, as a `|from()` without `.measurement()` does."""
    database: str | None
    rp: str | None
    where: CompiledExpr | None
    group_by: list[str] | Literal["*"]
    group_by_measurement: bool
    alert: AlertSpec
    dbrps: list[tuple[str, str]]
    """The `dbrp "db"."rp"` statements of the script."""


# --------------------------------------------------------------------------------------------
# Syntax tree of the statements (expressions use expr's nodes)


@dataclass(frozen=True, slots=True)
class _Declaration:
    name: str
    value: Any
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class _TypeDeclaration:
    name: str
    type: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class _Dbrp:
    db: str
    rp: str


@dataclass(frozen=True, slots=True)
class _Link:
    kind: str
    name: str
    args: tuple[Any, ...]
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class _Chain:
    head: str
    links: tuple[_Link, ...]
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class _Lambda:
    body: expr.Node
    text: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class _List:
    items: tuple[Any, ...]
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class _StarNode:
    line: int
    column: int


_STRING_ESCAPE = "\\'"
_REFERENCE_ESCAPE = '\\"'
_DURATION_UNITS = {
    "u": 1_000,
    "µ": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 604_800_000_000_000,
}


def _pos(tok: Token) -> tuple[int, int]:
    return tok.line or 0, tok.column or 0


class _ToAst(Transformer[Token, Any]):
    def __init__(self, script: str) -> None:
        super().__init__()
        self.script = script

    def program(self, children: list[Any]) -> list[Any]:
        return children

    def declaration(self, c: list[Any]) -> _Declaration:
        return _Declaration(str(c[1]), c[2], *_pos(c[0]))

    def type_declaration(self, c: list[Any]) -> _TypeDeclaration:
        return _TypeDeclaration(str(c[1]), str(c[2]), *_pos(c[0]))

    def dbrp(self, c: list[Any]) -> _Dbrp:
        return _Dbrp(_unquote_reference(c[1]), _unquote_reference(c[2]))

    def chain(self, c: list[Any]) -> _Chain:
        return _Chain(str(c[0]), tuple(c[1:]), *_pos(c[0]))

    def _link(self, kind: str, c: list[Any]) -> _Link:
        return _Link(kind, str(c[1]), tuple(c[2:]), *_pos(c[1]))

    def pipe_call(self, c: list[Any]) -> _Link:
        return self._link("pipe", c)

    def property_call(self, c: list[Any]) -> _Link:
        return self._link("property", c)

    def property_get(self, c: list[Any]) -> _Link:
        return self._link("get", c)

    def udf_call(self, c: list[Any]) -> _Link:
        return self._link("udf", c)

    @v_args(meta=True)
    def lambda_expr(self, meta: Any, c: list[Any]) -> _Lambda:
        body = _no_star(c[1])
        text = self.script[meta.start_pos : meta.end_pos].removeprefix("lambda:").strip()
        return _Lambda(body, text, *_pos(c[0]))

    def list_expr(self, c: list[Any]) -> _List:
        items = []
        for tok in c[1:]:
            if tok.type == "IDENT":
                items.append(expr.Identifier(str(tok), *_pos(tok)))
            elif tok.type == "STRING":
                items.append(_unquote_string(tok))
            else:
                items.append(_StarNode(*_pos(tok)))
        return _List(tuple(items), *_pos(c[0]))

    def binary(self, c: list[Any]) -> expr.Binary:
        left, op, right = c
        return expr.Binary(str(op), _no_star(left), _no_star(right), *_pos(op))

    def unary_op(self, c: list[Any]) -> expr.Unary:
        op, operand = c
        return expr.Unary(str(op), _no_star(operand), *_pos(op))

    def call(self, c: list[Any]) -> expr.Call:
        name = c[0]
        return expr.Call(str(name), tuple(_no_star(a) for a in c[1:]), *_pos(name))

    def number(self, c: list[Token]) -> expr.Literal:
        return expr.Literal(_number(c[0]), *_pos(c[0]))

    def duration(self, c: list[Token]) -> expr.Literal:
        text = str(c[0])
        unit = text[-2:] if text.endswith("ms") else text[-1]
        ns = int(text[: -len(unit)]) * _DURATION_UNITS[unit]
        if ns > _INT64_MAX:
            raise TickError(f"overflowed duration {text}", *_pos(c[0]))
        return expr.Literal(Duration(ns), *_pos(c[0]))

    def string(self, c: list[Token]) -> expr.Literal:
        return expr.Literal(_unquote_string(c[0]), *_pos(c[0]))

    def true(self, c: list[Token]) -> expr.Literal:
        return expr.Literal(True, *_pos(c[0]))

    def false(self, c: list[Token]) -> expr.Literal:
        return expr.Literal(False, *_pos(c[0]))

    def regex(self, c: list[Token]) -> expr.Literal:
        pattern = str(c[0])[1:-1].replace("\\/", "/")
        try:
            return expr.Literal(Regex(pattern), *_pos(c[0]))
        except ValueError as e:
            raise TickError(str(e), *_pos(c[0])) from None

    def star(self, c: list[Token]) -> _StarNode:
        return _StarNode(*_pos(c[0]))

    def reference(self, c: list[Token]) -> expr.Reference:
        return expr.Reference(_unquote_reference(c[0]), *_pos(c[0]))

    def identifier(self, c: list[Token]) -> expr.Identifier:
        return expr.Identifier(str(c[0]), *_pos(c[0]))


def _no_star(node: Any) -> Any:
    if isinstance(node, _StarNode):
        raise TickError("unexpected * in an expression", node.line, node.column)
    return node


def _unquote_string(tok: Token) -> str:
    text = str(tok)
    if len(text) >= 6 and text.startswith("'''"):
        return text[3:-3]
    return text[1:-1].replace(_STRING_ESCAPE, "'")


def _unquote_reference(tok: Token) -> str:
    return str(tok)[1:-1].replace(_REFERENCE_ESCAPE, '"')


def _number(tok: Token) -> int | float:
    text = str(tok)
    if "." in text:
        return float(text)
    try:
        # A leading zero means octal, as in Kapacitor (so `.mode(0644)` is what users expect).
        value = int(text, 8) if text[0] == "0" and len(text) > 1 else int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= _INT64_MAX:
        raise TickError(f'illegal number syntax: "{text}"', *_pos(tok))
    return value


_TERMINAL_NAMES = {
    "IDENT": "identifier",
    "NUMBER": "number",
    "DURATION": "duration",
    "STRING": "string",
    "REFERENCE": "field reference",
    "REGEX": "regex",
    "LAMBDA": "'lambda:'",
    "VAR": "'var'",
    "DBRP": "'dbrp'",
    "TRUE": "TRUE",
    "FALSE": "FALSE",
    "AND": "AND",
    "OR": "OR",
    "EQ_OP": "comparison",
    "CMP_OP": "comparison",
    "$END": "end of script",
}


def _describe_terminals(names: set[str], parser: Lark) -> str:
    patterns = {t.name: t.pattern.value for t in parser.terminals}
    return ", ".join(sorted({_TERMINAL_NAMES.get(n) or repr(patterns[n]) for n in names}))


@functools.cache
def _parser() -> Lark:
    return Lark.open(
        str(Path(__file__).with_name("tickscript.lark")),
        parser="lalr",
        lexer="contextual",
        start=["program", "expr"],
        propagate_positions=True,
        maybe_placeholders=False,
    )


def _parse(text: str, start: str) -> Any:
    parser = _parser()
    try:
        tree = parser.parse(text, start=start)
    except UnexpectedInput as e:
        raise _syntax_error(e, text, parser) from None
    try:
        return _ToAst(text).transform(tree)
    except VisitError as e:  # lark wraps what a transformer callback raises
        if isinstance(e.orig_exc, TickError):
            raise e.orig_exc from None
        raise
    except RecursionError:
        raise TickError("the script is nested too deeply", 1, 1) from None


def _syntax_error(e: UnexpectedInput, text: str, parser: Lark) -> TickError:
    if isinstance(e, UnexpectedCharacters):
        char = text[e.pos_in_stream]
        message = {
            "'": "unterminated string",
            '"': "unterminated field reference",
        }.get(char, f"unexpected character {char!r}")
        return TickError(message, e.line, e.column)
    if isinstance(e, UnexpectedToken) and e.token.type != "$END":
        tok = e.token
        # `accepts` also lists the keywords (TRUE, AND, ...) that `expected` leaves out.
        acceptable = e.accepts or e.expected
        if tok.type == "SLASH" and "REGEX" in acceptable:
            return TickError("unterminated regex", tok.line or 0, tok.column or 0)
        expected = _describe_terminals(acceptable, parser)
        return TickError(
            f"unexpected {tok.value!r}; expected one of: {expected}",
            tok.line or 0,
            tok.column or 0,
        )
    assert isinstance(e, UnexpectedToken | UnexpectedEOF)
    lines = text.split("\n")
    return TickError("unexpected end of script", len(lines), len(lines[-1]) + 1)


# --------------------------------------------------------------------------------------------
# Evaluation


class _Star:
    __slots__ = ()

    def __repr__(self) -> str:
        return "*"


_STAR = _Star()


@dataclass(frozen=True, slots=True)
class _LambdaValue:
    body: expr.Node
    text: str
    line: int
    column: int


class _Stream:
    def __init__(self) -> None:
        self.children: list[_From] = []


class _Batch:
    """The predefined `batch`, there only so that using it can say batch tasks are unsupported."""


class _From:
    def __init__(self, link: _Link) -> None:
        self.line, self.column = link.line, link.column
        self.measurement: str | None = None
        self.database: str | None = None
        self.rp: str | None = None
        self.where: list[_LambdaValue] = []
        self.group_by: list[str] | Literal["*"] = []
        self.group_by_measurement = False
        self.children: list[_AlertNode] = []


class _AlertNode:
    def __init__(self, link: _Link) -> None:
        self.line, self.column = link.line, link.column
        self.spec = AlertSpec()


@dataclass(frozen=True, slots=True)
class _Cursor:
    """The value of `...|alert()...`: the alert node, and the handler last opened on it."""

    alert: _AlertNode
    handler: HandlerSpec | None


_ALERT_STRINGS = {
    "id": "id",
    "message": "message",
    "details": "details",
    "topic": "topic",
    "levelTag": "level_tag",
    "idTag": "id_tag",
    "levelField": "level_field",
    "idField": "id_field",
    "messageField": "message_field",
    "durationField": "duration_field",
}
_ALERT_LAMBDAS = {
    "info": "info",
    "warn": "warn",
    "crit": "crit",
    "infoReset": "info_reset",
    "warnReset": "warn_reset",
    "critReset": "crit_reset",
}
_ALERT_OTHER = ("stateChangesOnly", "flapping", "history", "noRecoveries")
_HANDLERS = ("kafka", "log", "post", "exec", "tcp")
_HANDLER_PROPERTIES = {
    "kafka": (
        "cluster",
        "kafkaTopic",
        "template",
        "disablePartitionById",
        "partitionHashAlgorithm",
        "partitionAlgorithm",
    ),
    "log": ("mode",),
    "post": ("header",),
    "exec": (),
    "tcp": (),
}
_FROM_PROPERTIES = (
    "measurement",
    "database",
    "retentionPolicy",
    "where",
    "groupBy",
    "groupByMeasurement",
)
_ARG_TYPE_NAMES = {
    str: "string",
    int: "int",
    float: "float",
    bool: "boolean",
    Duration: "duration",
    Regex: "regex",
    _LambdaValue: "lambda",
    list: "list",
    _Star: "*",
}


def _describe(value: object) -> str:
    if isinstance(value, _Stream):
        return "stream"
    if isinstance(value, _Batch):
        return "batch"
    if isinstance(value, _From):
        return "|from()"
    if isinstance(value, _Cursor):
        return f"|{value.handler.kind}()" if value.handler else "|alert()"
    return _ARG_TYPE_NAMES.get(type(value), type(value).__name__)


class _Evaluator:
    def __init__(self, tz: tzinfo | None, clock: Callable[[], int]) -> None:
        self.tz = tz
        self.clock = clock
        self.stream = _Stream()
        self.vars: dict[str, Any] = {"stream": self.stream, "batch": _Batch()}
        self.dbrps: list[tuple[str, str]] = []

    def run(self, statements: list[Any]) -> TaskSpec:
        for statement in statements:
            match statement:
                case _Declaration(name=name):
                    if name in self.vars:
                        raise TickError(
                            f"attempted to redefine {name}, vars are immutable",
                            statement.line,
                            statement.column,
                        )
                    self.vars[name] = self.value(statement.value)
                case _TypeDeclaration():
                    raise TickError(
                        f"template var declarations (var {statement.name} {statement.type}) are "
                        "not supported; give the var a value",
                        statement.line,
                        statement.column,
                    )
                case _Dbrp():
                    self.dbrps.append((statement.db, statement.rp))
                case _Chain():
                    self.chain(statement)
        return self.finish()

    # values ----------------------------------------------------------------------------------

    def value(self, node: Any) -> Any:
        match node:
            case _Chain():
                return self.chain(node)
            case _Lambda():
                body = self.resolve(node.body)
                return _LambdaValue(body, node.text, node.line, node.column)
            case _List():
                return [self.list_item(item) for item in node.items]
            case _StarNode():
                return _STAR
            case expr.Literal():
                return node.value
            case expr.Identifier():
                return self.lookup(node.name, node.line, node.column)
            case expr.Reference():
                raise TickError(
                    f'"{node.name}" is a field reference, allowed only inside a lambda; '
                    f"did you mean the string '{node.name}' (single quotes)?",
                    node.line,
                    node.column,
                )
        try:
            return expr.evaluate_constant(self.resolve(node))
        except expr.CompileError as e:
            raise TickError(e.message, e.line or node.line, e.column or node.column) from None

    def list_item(self, item: Any) -> Any:
        if isinstance(item, expr.Identifier):
            return self.lookup(item.name, item.line, item.column)
        return _STAR if isinstance(item, _StarNode) else item

    def lookup(self, name: str, line: int, column: int) -> Any:
        try:
            return self.vars[name]
        except KeyError:
            names = ", ".join(sorted(self.vars))
            message = f'name "{name}" is undefined. Names in scope: {names}'
            raise TickError(message, line, column) from None

    def resolve(self, node: expr.Node) -> expr.Node:
        scope = {k: (v.body if isinstance(v, _LambdaValue) else v) for k, v in self.vars.items()}
        try:
            return expr.resolve_identifiers(node, scope)
        except expr.CompileError as e:
            raise TickError(e.message, e.line, e.column) from None

    def compile(self, value: _LambdaValue) -> CompiledExpr:
        try:
            return expr.compile_expression(
                value.body, text=value.text, tz=self.tz, clock=self.clock
            )
        except expr.CompileError as e:
            raise TickError(e.message, e.line or value.line, e.column or value.column) from None

    # chains ----------------------------------------------------------------------------------

    def chain(self, node: _Chain) -> Any:
        obj = self.lookup(node.head, node.line, node.column)
        for link in node.links:
            if link.kind == "get":
                raise TickError(
                    f"reading a property (.{link.name} without parentheses) is not supported",
                    link.line,
                    link.column,
                )
            if link.kind == "udf":
                raise TickError(
                    f"user-defined function @{link.name}() is not supported",
                    link.line,
                    link.column,
                )
            args = [self.value(a) for a in link.args]
            if len(args) == 1 and isinstance(args[0], list):
                args = args[0]
            if link.kind == "pipe":
                obj = self.pipe(obj, link, args)
            else:
                obj = self.property(obj, link, args)
        return obj

    def pipe(self, obj: Any, link: _Link, args: list[Any]) -> Any:
        if isinstance(obj, _Batch):
            raise TickError(
                "batch tasks are not supported: alert tasks read stream|from()",
                link.line,
                link.column,
            )
        if isinstance(obj, _Stream) and link.name == "from":
            _check_args(link, args, ())
            node = _From(link)
            obj.children.append(node)
            return node
        if isinstance(obj, _From) and link.name == "alert":
            _check_args(link, args, ())
            alert = _AlertNode(link)
            obj.children.append(alert)
            return _Cursor(alert, None)
        raise TickError(
            f"unsupported node |{link.name}() after {_describe(obj)}: alert tasks support "
            "stream|from()|alert()",
            link.line,
            link.column,
        )

    def property(self, obj: Any, link: _Link, args: list[Any]) -> Any:
        if isinstance(obj, _From):
            self.from_property(obj, link, args)
            return obj
        if isinstance(obj, _Cursor):
            return self.alert_property(obj, link, args)
        raise TickError(
            f"unsupported property .{link.name}() on {_describe(obj)}", link.line, link.column
        )

    def from_property(self, node: _From, link: _Link, args: list[Any]) -> None:
        name = link.name
        if name in ("measurement", "database", "retentionPolicy"):
            (text,) = _check_args(link, args, ((str,),))
            setattr(node, {"retentionPolicy": "rp"}.get(name, name), text)
        elif name == "where":
            (value,) = _check_args(link, args, ((_LambdaValue,),))
            node.where.append(value)
        elif name == "groupBy":
            node.group_by = _group_by(link, args)
        elif name == "groupByMeasurement":
            _check_args(link, args, ())
            node.group_by_measurement = True
        else:
            raise _unsupported(link, "|from()", _FROM_PROPERTIES)

    def alert_property(self, cursor: _Cursor, link: _Link, args: list[Any]) -> _Cursor:
        name = link.name
        handler = cursor.handler
        spec = cursor.alert.spec
        if handler is not None and name in _HANDLER_PROPERTIES[handler.kind]:
            _handler_property(handler, link, args)
            return cursor
        if name in _ALERT_STRINGS:
            (text,) = _check_args(link, args, ((str,),))
            setattr(spec, _ALERT_STRINGS[name], text)
        elif name in _ALERT_LAMBDAS:
            (value,) = _check_args(link, args, ((_LambdaValue,),))
            setattr(spec, _ALERT_LAMBDAS[name], self.compile(value))
        elif name == "stateChangesOnly":
            durations = _check_args(link, args, ((Duration,),), minimum=0)
            spec.state_changes_only = True
            spec.state_changes_only_max = durations[0].to_timedelta() if durations else None
        elif name == "flapping":
            low, high = _check_args(link, args, ((int, float), (int, float)))
            if low > 1 or high > 1:
                raise TickError(
                    "alert flap thresholds are percentages and should be between 0 and 1",
                    link.line,
                    link.column,
                )
            spec.flapping = (float(low), float(high))
        elif name == "history":
            (count,) = _check_args(link, args, ((int,),))
            spec.history = max(count, 2)
        elif name == "noRecoveries":
            _check_args(link, args, ())
            spec.no_recoveries = True
        elif name in _HANDLERS:
            new = _new_handler(link, args)
            spec.handlers.append(new)
            return _Cursor(cursor.alert, new)
        elif name == "all":
            raise TickError(
                ".all() applies to batch tasks only, and alert tasks here are stream tasks",
                link.line,
                link.column,
            )
        else:
            supported = (*_ALERT_STRINGS, *_ALERT_LAMBDAS, *_ALERT_OTHER, *_HANDLERS)
            if handler is not None:
                supported = (*_HANDLER_PROPERTIES[handler.kind], *supported)
            raise _unsupported(link, _describe(cursor), supported)
        return _Cursor(cursor.alert, None)

    # result ----------------------------------------------------------------------------------

    def finish(self) -> TaskSpec:
        froms = self.stream.children
        if not froms:
            raise TickError("the script has no stream|from() pipeline", 1, 1)
        if len(froms) > 1:
            raise TickError(
                "only one stream|from() pipeline per task is supported",
                froms[1].line,
                froms[1].column,
            )
        source = froms[0]
        if not source.children:
            raise TickError("|from() is not followed by |alert()", source.line, source.column)
        if len(source.children) > 1:
            extra = source.children[1]
            raise TickError("only one |alert() per task is supported", extra.line, extra.column)
        alert = source.children[0].spec
        for handler in alert.handlers:
            if handler.kind == "kafka" and not handler.options["topic"]:
                raise TickError(".kafka() needs .kafkaTopic('name')", handler.line, handler.column)
        return TaskSpec(
            measurement=source.measurement,
            database=source.database,
            rp=source.rp,
            where=self.where(source.where),
            group_by=source.group_by,
            group_by_measurement=source.group_by_measurement,
            alert=alert,
            dbrps=self.dbrps,
        )

    def where(self, lambdas: list[_LambdaValue]) -> CompiledExpr | None:
        if not lambdas:
            return None
        combined = lambdas[0]
        for nxt in lambdas[1:]:
            # Kapacitor ANDs the expressions of repeated .where() calls.
            body = expr.Binary("AND", combined.body, nxt.body, nxt.line, nxt.column)
            text = f"({combined.text}) AND ({nxt.text})"
            combined = _LambdaValue(body, text, combined.line, combined.column)
        return self.compile(combined)


def _check_args(
    link: _Link,
    args: list[Any],
    expected: tuple[tuple[type, ...], ...],
    minimum: int | None = None,
) -> list[Any]:
    low = len(expected) if minimum is None else minimum
    if not low <= len(args) <= len(expected):
        count = str(len(expected)) if low == len(expected) else f"{low} to {len(expected)}"
        raise TickError(
            f".{link.name}() takes {count} argument(s), got {len(args)}", link.line, link.column
        )
    for value, types in zip(args, expected, strict=False):
        if type(value) not in types:
            wanted = " or ".join(_ARG_TYPE_NAMES[t] for t in types)
            raise TickError(
                f".{link.name}() expects {wanted}, got {_describe(value)}",
                link.line,
                link.column,
            )
    return args


def _group_by(link: _Link, args: list[Any]) -> list[str] | Literal["*"]:
    if any(a is _STAR for a in args):
        if len(args) > 1:
            raise TickError("cannot group by both '*' and named dimensions", link.line, link.column)
        return "*"
    for a in args:
        if not isinstance(a, str):
            raise TickError(
                f".groupBy() expects tag names or *, got {_describe(a)}", link.line, link.column
            )
    return list(args)


def _unsupported(link: _Link, where: str, supported: tuple[str, ...]) -> TickError:
    names = ", ".join(f".{s}()" for s in supported)
    return TickError(
        f"unsupported property .{link.name}() on {where}; supported: {names}",
        link.line,
        link.column,
    )


def _new_handler(link: _Link, args: list[Any]) -> HandlerSpec:
    kind = link.name
    options: dict[str, Any]
    if kind == "kafka":
        _check_args(link, args, ())
        options = {
            "cluster": "",
            "topic": "",
            "template": "",
            "disablePartitionById": False,
            "partitionAlgorithm": PartitionAlgorithm.CRC32.value,
        }
    elif kind == "log":
        (path,) = _check_args(link, args, ((str,),))
        options = {"path": path, "mode": DEFAULT_LOG_MODE}
    elif kind == "post":
        if not args:
            raise TickError(
                ".post() needs a URL (.endpoint() is not supported)", link.line, link.column
            )
        (url,) = _check_args(link, args, ((str,),))
        options = {"url": url, "headers": {}}
    elif kind == "exec":
        if not args:
            raise TickError(".exec() needs the program to run", link.line, link.column)
        words = _check_args(link, args, ((str,),) * len(args))
        options = {"prog": words[0], "args": words[1:]}
    else:  # tcp
        (address,) = _check_args(link, args, ((str,),))
        options = {"address": address}
    return HandlerSpec(kind, options, link.line, link.column)


def _handler_property(handler: HandlerSpec, link: _Link, args: list[Any]) -> None:
    name = link.name
    options = handler.options
    if name in ("cluster", "template"):
        (options[name],) = _check_args(link, args, ((str,),))
    elif name == "kafkaTopic":
        (options["topic"],) = _check_args(link, args, ((str,),))
    elif name == "disablePartitionById":
        # The code takes no argument; the docs write .disablePartitionById(FALSE).
        flags = _check_args(link, args, ((bool,),), minimum=0)
        options["disablePartitionById"] = flags[0] if flags else True
    elif name in ("partitionHashAlgorithm", "partitionAlgorithm"):
        (text,) = _check_args(link, args, ((str,),))
        try:
            options["partitionAlgorithm"] = PartitionAlgorithm.parse(text).value
        except ValueError as e:
            raise TickError(str(e), link.line, link.column) from None
    elif name == "mode":
        (options["mode"],) = _check_args(link, args, ((int,),))
    else:  # .header(key, value), the one property of .post()
        key, value = _check_args(link, args, ((str,), (str,)))
        options["headers"][key] = value


# --------------------------------------------------------------------------------------------
# Public API


def parse_task(
    script: str, *, tz: tzinfo | None = None, clock: Callable[[], int] = _time.time_ns
) -> TaskSpec:
    """Parse and evaluate an alert task; TickError says what is wrong and where.

    `tz` and `clock` are handed to the lambdas (see expr.compile_expression).
    """
    statements = _parse(script, "program")
    return _Evaluator(tz, clock).run(statements)


def parse_lambda(text: str) -> expr.Node:
    """Parse a lambda body written without `lambda:`, e.g. a topic handler's `match`."""
    return _parse(text, "expr")


def compile_match(
    text: str, *, tz: tzinfo | None = None, clock: Callable[[], int] = _time.time_ns
) -> CompiledExpr:
    """Compile a topic-handler `match` expression; evaluate it with expr.MatchScope."""
    node = parse_lambda(text)
    try:
        return expr.compile_match(node, text=text, tz=tz, clock=clock)
    except expr.CompileError as e:
        raise TickError(e.message, e.line or 1, e.column or 1) from None
