"""Gate expressions: parse them with a tiny tokenizer (never eval) and evaluate them.

Grammar (whitespace between tokens is free)::

    gate   := METRIC OP rhs
    rhs    := NUMBER | NUMBER '*' 'baseline' | 'baseline' | 'baseline' '*' NUMBER
    OP     := '<=' | '<' | '>=' | '>' | '==' | '!='
    NUMBER := [+-]? digits [. digits] [e [+-] digits]  |  'true' (1)  |  'false' (0)

Bounds, so that a hostile or mistyped gate is one short error line: digits are ASCII
0-9 only (Python's float() would take '٠.٩٨'), a number is finite and at most
``MAX_NUMBER_CHARS`` characters, an expression at most ``MAX_GATE_CHARS``, and a
message quotes at most a bounded excerpt of it.

A relative gate's limit is ``threshold * baseline value``. Timing metrics
(latency, memory, time) measured on the host emulator are not gated unless the
gate opts in with ``allow_host_timing``: the emulator's timings are host timings.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from edgegate.errors import GateExpressionError, UnknownNameError
from edgegate.metrics import Measurement, MetricDef, Source, get_metric
from edgegate.safe_load import excerpt

# A gate is a metric, an operator and a number: a few dozen characters. 500 leaves room for
# long metric names; anything longer is not a gate.
MAX_GATE_CHARS = 500
# A double has 17 significant digits; with sign, point and exponent 32 characters is plenty.
MAX_NUMBER_CHARS = 32


class GateStatus(str, Enum):
    PASS = "pass"
    FAIL = "fail"
    NOT_APPLICABLE = "n/a"
    MISSING = "missing"


_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
    "!=": operator.ne,
}


class _Tok(str, Enum):
    NAME = "name"
    NUMBER = "number"
    OP = "operator"
    STAR = "'*'"
    END = "end of expression"


@dataclass(frozen=True)
class _Token:
    kind: _Tok
    text: str
    pos: int  # 0-based offset into the expression


# Order matters: two-character operators before one-character ones.
_TOKEN_RE = re.compile(
    r"""
    (?P<number>[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\[[A-Za-z0-9_.-]+\])?)
  | (?P<op><=|>=|==|!=|<|>)
  | (?P<star>\*)
    """,
    re.VERBOSE | re.ASCII,
)

_KIND_BY_GROUP = {"number": _Tok.NUMBER, "name": _Tok.NAME, "op": _Tok.OP, "star": _Tok.STAR}


def _tokenize(expr: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(expr):
        if expr[pos].isspace():
            pos += 1
            continue
        m = _TOKEN_RE.match(expr, pos)
        if m is None or m.lastgroup is None:
            raise GateExpressionError(
                f"gate '{excerpt(expr)}': unexpected character {_char(expr[pos])} at column {pos + 1}"
            )
        tokens.append(_Token(_KIND_BY_GROUP[m.lastgroup], m.group(), pos))
        pos = m.end()
    tokens.append(_Token(_Tok.END, "", len(expr)))
    return tokens


@dataclass(frozen=True)
class Gate:
    expr: str
    metric: str
    op: str
    threshold: float
    relative: bool
    allow_host_timing: bool = False

    def describe(self) -> str:
        """Canonical form, e.g. ``accuracy >= 0.99 * baseline``."""
        text = f"{self.metric} {self.op} {_fmt(self.threshold)}"
        if self.relative:
            text += " * baseline"
        if self.allow_host_timing:
            text += " (host timing allowed)"
        return text


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    status: GateStatus
    value: float | None
    limit: float | None
    source: Source | None
    reason: str


def _char(c: str) -> str:
    """A character as a message shows it: quoted, and named when it is not plain ASCII
    (a digit of another script looks like one of ours)."""
    if c.isascii() and c.isprintable():
        return f"'{c}'"
    return f"'{c}' (U+{ord(c):04X}; only ASCII digits 0-9 make numbers)" if c.isdigit() else f"'{c}' (U+{ord(c):04X})"


def _fmt(x: float) -> str:
    if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens = _tokenize(expr)
        self.i = 0

    def _peek(self) -> _Token:
        return self.tokens[self.i]

    def _fail(self, expected: str) -> GateExpressionError:
        tok = self._peek()
        found = "end of expression" if tok.kind is _Tok.END else f"'{excerpt(tok.text, 40)}'"
        return GateExpressionError(
            f"gate '{excerpt(self.expr)}': expected {expected} at column {tok.pos + 1}, found {found}"
            " (form: METRIC OP NUMBER [* baseline], e.g. 'accuracy >= 0.99 * baseline')"
        )

    def _take(self, kind: _Tok, expected: str) -> _Token:
        tok = self._peek()
        if tok.kind is not kind:
            raise self._fail(expected)
        self.i += 1
        return tok

    def _number(self) -> float:
        tok = self._peek()
        if tok.kind is _Tok.NUMBER:
            self.i += 1
            where = f"gate '{excerpt(self.expr)}': number at column {tok.pos + 1}"
            if len(tok.text) > MAX_NUMBER_CHARS:
                raise GateExpressionError(
                    f"{where} has {len(tok.text):,} characters, more than {MAX_NUMBER_CHARS}"
                )
            value = float(tok.text)
            if not math.isfinite(value):
                raise GateExpressionError(f"{where}: {tok.text} is not a finite number")
            return value
        if tok.kind is _Tok.NAME and tok.text in ("true", "false"):
            self.i += 1
            return 1.0 if tok.text == "true" else 0.0
        raise self._fail("a number")

    def _is_baseline(self) -> bool:
        tok = self._peek()
        return tok.kind is _Tok.NAME and tok.text == "baseline"

    def parse(self) -> tuple[str, str, float, bool]:
        metric_tok = self._peek()
        if metric_tok.kind is not _Tok.NAME or metric_tok.text in ("baseline", "true", "false"):
            raise self._fail("a metric name")
        self.i += 1
        op = self._take(_Tok.OP, "a comparison operator (<=, <, >=, >, ==, !=)").text
        if self._is_baseline():
            self.i += 1
            threshold, relative = 1.0, True
            if self._peek().kind is _Tok.STAR:
                self.i += 1
                threshold = self._number()
        else:
            threshold = self._number()
            relative = False
            if self._peek().kind is _Tok.STAR:
                self.i += 1
                if not self._is_baseline():
                    raise self._fail("'baseline'")
                self.i += 1
                relative = True
        self._take(_Tok.END, "end of expression")
        return metric_tok.text, op, threshold, relative


def parse_gate(expr: str, *, allow_host_timing: bool = False, check_metric: bool = True) -> Gate:
    """Parse one gate expression. With ``check_metric`` the metric must be registered."""
    if not expr.strip():
        raise GateExpressionError("gate '': empty expression (form: METRIC OP NUMBER [* baseline])")
    if len(expr) > MAX_GATE_CHARS:
        raise GateExpressionError(
            f"gate '{excerpt(expr)}': {len(expr):,} characters, more than {MAX_GATE_CHARS}; "
            "a gate is METRIC OP NUMBER [* baseline]"
        )
    metric, op, threshold, relative = _Parser(expr).parse()
    if check_metric:
        try:
            get_metric(metric)
        except UnknownNameError as exc:
            raise GateExpressionError(f"gate '{excerpt(expr)}': {exc.message}") from exc
    return Gate(
        expr=expr,
        metric=metric,
        op=op,
        threshold=threshold,
        relative=relative,
        allow_host_timing=allow_host_timing,
    )


def _metric_def(name: str) -> MetricDef | None:
    # A gate parsed with check_metric=False may name a metric outside the registry;
    # such a metric has no kind, so it is never treated as a timing.
    try:
        return get_metric(name)
    except UnknownNameError:
        return None


def _result(
    gate: Gate,
    status: GateStatus,
    reason: str,
    *,
    value: float | None = None,
    limit: float | None = None,
    source: Source | None = None,
) -> GateResult:
    return GateResult(gate, status, value, limit, source, reason)


def evaluate_gate(
    gate: Gate,
    candidate: Mapping[str, Measurement],
    baseline: Mapping[str, Measurement] | None,
) -> GateResult:
    """Evaluate one gate against the candidate's (and for relative gates the baseline's)
    measurements."""
    cand = candidate.get(gate.metric)
    if cand is None:
        return _result(gate, GateStatus.MISSING, f"no '{gate.metric}' in the candidate's results")
    value, source = cand.value, cand.source
    defn = _metric_def(gate.metric)
    timing = defn is not None and defn.timing

    if timing and source is Source.HOST_EMULATOR and not gate.allow_host_timing:
        return _result(
            gate,
            GateStatus.NOT_APPLICABLE,
            "measured on host-emulator (host timing, not device); "
            "set allow_host_timing: true to gate on it",
            value=value,
            source=source,
        )

    if gate.relative:
        base = None if baseline is None else baseline.get(gate.metric)
        if base is None:
            return _result(
                gate,
                GateStatus.MISSING,
                f"relative gate needs a baseline value for '{gate.metric}'; the baseline has none",
                value=value,
                source=source,
            )
        if timing and base.source is not source:
            return _result(
                gate,
                GateStatus.NOT_APPLICABLE,
                f"sources differ: {base.source.value} vs {source.value} (baseline vs candidate);"
                " timings are only comparable from the same source",
                value=value,
                source=source,
            )
        limit = gate.threshold * base.value
        limit_text = f"{_fmt(limit)} ({_fmt(gate.threshold)} * baseline {_fmt(base.value)})"
    else:
        limit = gate.threshold
        limit_text = _fmt(limit)

    if math.isnan(value) or math.isnan(limit):
        return _result(
            gate,
            GateStatus.FAIL,
            f"{_fmt(value)} {gate.op} {limit_text}: NaN never passes",
            value=value,
            limit=limit,
            source=source,
        )
    ok = _OPS[gate.op](value, limit)
    verb = "holds" if ok else "does not hold"
    return _result(
        gate,
        GateStatus.PASS if ok else GateStatus.FAIL,
        f"{_fmt(value)} {gate.op} {limit_text} {verb}",
        value=value,
        limit=limit,
        source=source,
    )


def evaluate_gates(
    gates: Iterable[Gate],
    candidate: Mapping[str, Measurement],
    baseline: Mapping[str, Measurement] | None,
) -> list[GateResult]:
    return [evaluate_gate(g, candidate, baseline) for g in gates]


def verdict(results: Iterable[GateResult]) -> bool:
    """True when no gate failed and none is missing its numbers (n/a does not fail)."""
    return all(r.status not in (GateStatus.FAIL, GateStatus.MISSING) for r in results)
