"""MLflow's run filter grammar, parsed into SQL over the query layer's views.

``metrics.acc > 0.9 and params.optimizer = 'adam' and tags.team LIKE 'vis%'`` becomes a
WHERE clause with every value bound as a parameter, so no filter can inject SQL. Beyond
MLflow: ``OR``, parentheses, and numeric comparison of numeric params.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lakestore.errors import FilterError

ViewType = str | int
"""Which runs or experiments a search takes, as MLflow's ``ViewType`` says: ``active_only``
(the default), ``deleted_only`` or ``all``, or MLflow's numbers for them (1, 2, 3)."""

_VIEW_TYPES = {
    "active_only": ["active"],
    "deleted_only": ["deleted"],
    "all": ["active", "deleted"],
}
_MLFLOW_VIEW_TYPES = {1: "active_only", 2: "deleted_only", 3: "all"}


def lifecycle_stages(view_type: ViewType) -> list[str]:
    """The lifecycle stages that ``view_type`` takes; FilterError if it names none."""
    if isinstance(view_type, int) and not isinstance(view_type, bool):
        view_type = _MLFLOW_VIEW_TYPES.get(view_type, str(view_type))
    stages = _VIEW_TYPES.get(view_type.lower()) if isinstance(view_type, str) else None
    if stages is None:
        raise FilterError(
            f"view type {view_type!r} is not one of {', '.join(_VIEW_TYPES)} "
            "(or MLflow's ViewType 1, 2, 3)"
        )
    return stages


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),.])
  | (?P<backtick>`(?:[^`]|``)*`)
  | (?P<dotted>[A-Za-z_]+\.[A-Za-z0-9_\-:/.]+)
  | (?P<word>[A-Za-z_][A-Za-z0-9_\-:/]*)
    """,
    re.VERBOSE,
)

_PREFIXES = {
    "metric": "metrics",
    "metrics": "metrics",
    "param": "params",
    "params": "params",
    "parameter": "params",
    "parameters": "params",
    "tag": "tags",
    "tags": "tags",
    "attribute": "attributes",
    "attributes": "attributes",
    "attr": "attributes",
    "run": "attributes",
}

ATTRIBUTES = {
    "run_id": "run_id",
    "id": "run_id",
    "run_name": "run_name",
    "run name": "run_name",
    "status": "status",
    "start_time": "start_time",
    "created": "start_time",
    "end_time": "end_time",
    "user": '"user"',
    "user_id": '"user"',
    "experiment": "experiment",
}
"""Attribute names a filter takes (MLflow's, and ``user`` and ``experiment``): column of
``runs``."""
_TIME_COLUMNS = ("start_time", "end_time")

SYSTEM_TAGS = {
    "mlflow.parentRunId": "parent_run_id",
    "mlflow.runName": "run_name",
    "mlflow.user": '"user"',
}
"""MLflow's system tags that lakestore keeps as columns of ``runs``: a filter on one reads
the tag if a run has it (an imported run), else the column."""

_ORDERED = ("<", "<=", ">", ">=")
MAX_DEPTH = 50
"""Deepest nesting of parentheses a filter may use."""


@dataclass
class _Token:
    kind: str
    text: str
    position: int


@dataclass(frozen=True)
class Key:
    """A column a filter names: ``metrics.acc``, ``params.lr``, ``attributes.status``."""

    kind: str  # metrics, params, tags or attributes
    name: str

    def __str__(self) -> str:
        return f"{self.kind}.{self.name}"


@dataclass
class Compiled:
    """A filter as SQL: ``where`` over ``runs AS r``, with ``parameters`` bound in order."""

    where: str
    parameters: list[object] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)


def _tokens(text: str) -> list[_Token]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise FilterError(f"unexpected character {text[position]!r} at position {position}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(_Token(kind, match.group(), position))
        position = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    """Recursive descent: or-expression of and-expressions of comparisons."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0
        self.parameters: list[object] = []
        self.keys: list[Key] = []
        self.depth = 0

    # -- token helpers ------------------------------------------------------------------

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def _is_word(self, *words: str) -> bool:
        return self.token.kind == "word" and self.token.text.lower() in words

    def _advance(self) -> _Token:
        token = self.token
        self.index += 1
        return token

    def _fail(self, expected: str) -> FilterError:
        token = self.token
        found = "the end of the filter" if token.kind == "end" else repr(token.text)
        return FilterError(
            f"expected {expected} at position {token.position}, found {found} "
            f"in filter {self.text!r}"
        )

    def _expect_punct(self, text: str) -> None:
        if self.token.text != text:
            raise self._fail(repr(text))
        self._advance()

    # -- grammar ------------------------------------------------------------------------

    def parse(self) -> str:
        if self.token.kind == "end":
            return "true"
        sql = self._or()
        if self.token.kind != "end":
            raise self._fail("AND, OR or the end of the filter")
        return sql

    def _or(self) -> str:
        parts = [self._and()]
        while self._is_word("or"):
            self._advance()
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def _and(self) -> str:
        parts = [self._factor()]
        while self._is_word("and"):
            self._advance()
            parts.append(self._factor())
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def _factor(self) -> str:
        if self.token.text == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise FilterError(f"parentheses nested deeper than {MAX_DEPTH} in the filter")
            self._advance()
            sql = self._or()
            self._expect_punct(")")
            self.depth -= 1
            return f"({sql})"
        return self._comparison()

    def key(self) -> Key:
        """Parse ``prefix.name`` (name bare, `backticked` or "quoted"), or an attribute."""
        token = self.token
        if token.kind not in ("word", "dotted"):
            raise self._fail("a key such as metrics.acc, params.lr or attributes.status")
        self._advance()
        word = token.text.lower()
        if token.kind == "dotted":  # prefix.name, the name running to the first space
            prefix, name = token.text.split(".", 1)
            if prefix.lower() in _PREFIXES:
                kind = _PREFIXES[prefix.lower()]
                return self._checked_key(kind, name)
            self.index -= 1
            raise self._fail("a key such as metrics.acc, params.lr or attributes.status")
        if self.token.text == "." and word in _PREFIXES:
            self._advance()
            kind = _PREFIXES[word]
            name_token = self._advance()
            if name_token.kind == "word":
                name = name_token.text
            elif name_token.kind == "backtick":
                name = name_token.text[1:-1].replace("``", "`")
            elif name_token.kind == "string" and name_token.text.startswith('"'):
                name = name_token.text[1:-1].replace('""', '"')
            else:
                self.index -= 1
                raise self._fail(f"a {kind[:-1]} name after '{token.text}.'")
        elif word in ATTRIBUTES:
            kind, name = "attributes", word
        else:
            self.index -= 1
            raise self._fail("a key such as metrics.acc, params.lr or attributes.status")
        return self._checked_key(kind, name)

    def _checked_key(self, kind: str, name: str) -> Key:
        if kind == "attributes" and name.lower() not in ATTRIBUTES:
            self.index -= 1
            raise self._fail(f"an attribute ({', '.join(sorted(ATTRIBUTES))})")
        return Key(kind, name.lower() if kind == "attributes" else name)

    def _value(self) -> object:
        token = self.token
        if token.kind == "number":
            self._advance()
            if re.search(r"[.eE]", token.text):
                return float(token.text)
            number = int(token.text)
            # Beyond int64 a whole number compares as what metrics and params hold: a double.
            return number if -(2**63) <= number < 2**63 else float(number)
        if token.kind == "string":
            self._advance()
            quote = token.text[0]
            return token.text[1:-1].replace(quote * 2, quote)
        raise self._fail("a number or a quoted string")

    def _comparison(self) -> str:
        key = self.key()
        self.keys.append(key)
        column = self._column(key, len(self.keys) - 1)
        if self._is_word("is"):
            self._advance()
            negated = self._is_word("not")
            if negated:
                self._advance()
            if not self._is_word("null"):
                raise self._fail("NULL")
            self._advance()
            return f"{column.text_column} IS {'NOT ' if negated else ''}NULL"
        negated = self._is_word("not")
        if negated:
            self._advance()
            if not self._is_word("in", "like", "ilike"):
                raise self._fail("IN, LIKE or ILIKE after NOT")
        if self._is_word("in"):
            self._advance()
            self._expect_punct("(")
            values = [self._value()]
            while self.token.text == ",":
                self._advance()
                values.append(self._value())
            self._expect_punct(")")
            placeholders = ", ".join(self._bind(key, column, value) for value in values)
            sql = f"{column.for_values(values)} {'NOT ' if negated else ''}IN ({placeholders})"
            return f"coalesce({sql}, {'true' if negated else 'false'})" if negated else sql
        if self._is_word("like", "ilike"):
            operator = self._advance().text.upper()
            value = self._value()
            if not isinstance(value, str):
                raise FilterError(f"{operator} on {key} needs a quoted pattern, got {value!r}")
            sql = f"{column.text_column} {operator} {self._bind(key, column, value)}"
            return f"NOT coalesce({sql}, false)" if negated else sql
        if self.token.kind != "op":
            raise self._fail("a comparison (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, IS NULL)")
        operator = self._advance().text
        operator = "!=" if operator == "<>" else operator
        value = self._value()
        compared = column.for_values([value])
        sql = f"{compared} {operator} {self._bind(key, column, value)}"
        if operator in _ORDERED and compared == column.numeric and key.kind != "attributes":
            # As in IEEE 754 and MLflow, no ordered comparison matches NaN (DuckDB orders
            # NaN above every number).
            return f"({sql} AND NOT isnan({compared}))"
        return sql

    def _bind(self, key: Key, column: _Column, value: object) -> str:
        if key.kind == "metrics" and not isinstance(value, (int, float)):
            raise FilterError(f"{key} is compared with {value!r}; metrics compare with numbers")
        if key.kind == "tags" and not isinstance(value, str):
            raise FilterError(f"{key} is compared with {value!r}; tags compare with 'quoted text'")
        self.parameters.append(value)
        return "?"

    def _column(self, key: Key, index: int) -> _Column:
        if key.kind == "attributes":
            name = ATTRIBUTES[key.name]
            if name in _TIME_COLUMNS:
                return _Column(f"r.{name}", numeric=f"epoch_ms(r.{name})")
            return _Column(f"r.{name}")
        if key.kind == "metrics":
            return _Column(f"m.latest_{index}", numeric=f"m.latest_{index}")
        if key.kind == "params":
            return _Column(f"p.value_{index}", numeric=f"p.value_float_{index}")
        return _Column(tag_column(key, index))


def tag_column(key: Key, index: int) -> str:
    """The SQL of the tag ``key`` (joined as number ``index``), MLflow's system tags
    falling back to their column of ``runs``."""
    column = SYSTEM_TAGS.get(key.name)
    if column is None:
        return f"t.value_{index}"
    return f"coalesce(t.value_{index}, r.{column})"


@dataclass
class _Column:
    """A filtered column: its text form, and its numeric form where it has one."""

    text_column: str
    numeric: str | None = None

    def for_values(self, values: list[object]) -> str:
        numbers = [isinstance(value, (int, float)) for value in values]
        if any(numbers) and not all(numbers):
            raise FilterError(f"values {values!r} mix numbers and text")
        if all(numbers) and self.numeric is not None:
            return self.numeric
        return self.text_column


def compile_filter(text: str | None) -> Compiled:
    """The SQL for an MLflow-style filter string (empty or None matches every run)."""
    parser = _Parser(text or "")
    where = parser.parse()
    return Compiled(where, parser.parameters, parser.keys)


MAX_KEYS = 256
"""The most params, metrics and tags one search may filter and order by."""

_PIVOTS = {
    # kind: (view, alias, columns of the view, each named <column>_<key index>)
    "metrics": ("metric_summary", "m", ("latest",)),
    "params": ("params", "p", ("value", "value_float")),
    "tags": ("tags", "t", ("value",)),
}


def joins(keys: list[Key]) -> str:
    """The LEFT JOINs that bring each filtered key's columns next to ``runs AS r``: one
    per kind of key, over its view pivoted to a column per key, so that a filter's cost
    grows with its keys, not their square.

    The key names are bound parameters too: they come before the filter's (see
    :func:`join_parameters`).
    """
    if sum(key.kind != "attributes" for key in keys) > MAX_KEYS:
        raise FilterError(
            f"a search may filter and order by at most {MAX_KEYS} params, metrics and tags; "
            "this one names more: query the params, metric_summary and tags views instead"
        )
    parts = []
    for kind, (view, alias, columns) in _PIVOTS.items():
        indexes = [index for index, key in enumerate(keys) if key.kind == kind]
        if not indexes:
            continue
        pivoted = ", ".join(
            f"first({column}) FILTER (WHERE key = ?) AS {column}_{index}"
            for index in indexes
            for column in columns
        )
        parts.append(
            f"LEFT JOIN (SELECT experiment, run_id, {pivoted} FROM {view} "
            f"WHERE list_contains(?, key) GROUP BY experiment, run_id) AS {alias} "
            f"ON {alias}.experiment = r.experiment AND {alias}.run_id = r.run_id"
        )
    return "\n".join(parts)


def join_parameters(keys: list[Key]) -> list[object]:
    """The values bound by :func:`joins`, in order."""
    parameters: list[object] = []
    for kind, (_, _, columns) in _PIVOTS.items():
        names = [key.name for key in keys if key.kind == kind]
        if names:
            parameters += [name for name in names for _ in columns]
            parameters.append(names)
    return parameters


def parse_order_by(clauses: list[str]) -> list[tuple[Key, bool]]:
    """``["metrics.acc DESC", "attributes.start_time"]`` as (key, descending) pairs."""
    parsed = []
    for clause in clauses:
        parser = _Parser(clause)
        key = parser.key()
        descending = False
        if parser._is_word("asc", "desc"):
            descending = parser._advance().text.lower() == "desc"
        if parser.token.kind != "end":
            raise parser._fail("ASC, DESC or the end of the order-by clause")
        parsed.append((key, descending))
    return parsed
