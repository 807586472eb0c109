"""Query connections for others: statements that only read, and a sandbox of the store.

``lakestore query`` runs SQL typed by a user who may not expect it to write files, and a
service may run SQL written by other people. Two levels protect them:

- *reads only*: every statement must be a query (SELECT and its short forms, EXPLAIN of a
  query, a PRAGMA that reads), told apart by DuckDB's own parser, not by patterns on the
  text; table functions that change DuckDB's state (logging to files, profiling) are
  refused, and DuckDB's configuration is locked;
- *sandbox*: besides, DuckDB may open no file outside the store root, load no extension
  and change no setting, enforced by DuckDB itself (``enable_external_access``,
  ``allowed_directories``, ``lock_configuration``).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, NamedTuple

from lakestore.errors import QueryError, ReadOnlyError

if TYPE_CHECKING:
    import duckdb

WRITE_HINT = (
    "to write a query's result to a file, use `lakestore query --output FILE`, "
    "`lakestore export` or Store.export()"
)

READING_PRAGMAS = frozenset(
    {
        "collations",
        "database_list",
        "database_size",
        "functions",
        "metadata_info",
        "platform",
        "show",
        "show_databases",
        "show_tables",
        "show_tables_expanded",
        "storage_info",
        "table_info",
        "user_agent",
        "version",
    }
)
"""PRAGMAs that only return information; the others change settings or run other SQL."""

STATEFUL_FUNCTIONS = frozenset(
    {
        "checkpoint",
        "create_external_resource",
        "deregister_external_resource",
        "destroy_external_resource",
        "disable_logging",
        "disable_profiling",
        "enable_logging",  # can write log files
        "enable_profiling",  # can write profile files
        "force_checkpoint",
        "json_execute_serialized_sql",
        "query",  # runs SQL given as text, which the checks here cannot see
        "register_external_resource",
        "register_external_resource_type",
        "truncate_duckdb_logs",
    }
)
"""Table functions that change DuckDB's state although a SELECT calls them."""


def check_reads_only(connection: duckdb.DuckDBPyConnection, query: str) -> None:
    """Raise ReadOnlyError unless every statement of ``query`` only reads.

    Statements are split and typed by DuckDB's parser. A PIVOT whose columns DuckDB must
    first find (no ``IN`` list) parses as several statements; it counts as a read when the
    whole statement parses as a subquery, which no COPY, INSERT or other command does.
    """
    import duckdb

    try:
        statements = connection.extract_statements(query)
    except duckdb.Error as error:
        raise QueryError(f"{type(error).__name__}: {error}") from None
    for statement in statements:
        text = statement.query.strip()
        if not _reads(connection, statement.type, text):
            raise ReadOnlyError(
                f"{statement.type.name} statement {_excerpt(text)!r} refused: this "
                "connection only reads (SELECT, WITH, FROM, VALUES, TABLE, DESCRIBE, SHOW, "
                f"SUMMARIZE, EXPLAIN, PRAGMAs that read); {WRITE_HINT}"
            )
        _check_functions(text)


def _reads(connection: duckdb.DuckDBPyConnection, kind: duckdb.StatementType, text: str) -> bool:
    """Whether the statement ``text`` of type ``kind`` only reads."""
    import duckdb

    if kind is duckdb.StatementType.SELECT:
        return True
    if kind is duckdb.StatementType.MULTI:
        return _is_subquery(connection, text)
    if kind is duckdb.StatementType.EXPLAIN:
        check_reads_only(connection, _explained(text))
        return True
    if kind is duckdb.StatementType.PRAGMA:
        return _pragma_name(text) in READING_PRAGMAS
    return False


def confine(connection: duckdb.DuckDBPyConnection, root: str) -> None:
    """Let ``connection`` open only files under ``root`` (it spills to no temporary folder)
    and load no extension; call :func:`lock` afterwards so that this cannot be undone.

    Files of a Python filesystem registered before (fsspec, for S3) are checked by their
    URL, so ``root`` is the store's URL; paths are normalised first, so ``..`` cannot
    leave it.
    """
    for setting, value in (
        # No folder to spill to: DuckDB would allow its files, and others' spill files there.
        ("temp_directory", ""),
        ("allowed_directories", [root.rstrip("/") + "/"]),
        ("enable_external_access", False),
        ("autoload_known_extensions", False),
        ("allow_community_extensions", False),
    ):
        connection.execute(f"SET {setting} = $1", [value])


def lock(connection: duckdb.DuckDBPyConnection) -> None:
    """Refuse every later change of the connection's settings (``SET``, ``RESET``)."""
    connection.execute("SET lock_configuration = true")


class _Token(NamedTuple):
    start: int
    text: str
    kind: str  # identifier, keyword, operator, string_const, numeric_const, comment


def _tokens(text: str) -> list[_Token]:
    """The tokens of ``text``, by DuckDB's tokenizer."""
    import duckdb

    spans = duckdb.tokenize(text)
    ends = [start for start, _ in spans[1:]] + [len(text)]
    return [
        _Token(start, text[start:end].strip(), kind.name)
        for (start, kind), end in zip(spans, ends, strict=True)
    ]


def _is_subquery(connection: duckdb.DuckDBPyConnection, text: str) -> bool:
    import duckdb

    try:
        wrapped = connection.extract_statements(f"SELECT * FROM (\n{text}\n)")
    except duckdb.Error:
        return False
    return len(wrapped) == 1


def _explained(text: str) -> str:
    """The statement that ``EXPLAIN [ANALYZE | (options)] <statement>`` explains."""
    tokens = _tokens(text)
    position = 1  # after EXPLAIN
    if position < len(tokens) and tokens[position].text.lower() in ("analyze", "analyse"):
        position += 1
    elif position < len(tokens) and tokens[position].text == "(":
        depth = 0
        while position < len(tokens):
            depth += {"(": 1, ")": -1}.get(tokens[position].text, 0)
            position += 1
            if depth == 0:
                break
    return text[tokens[position].start :] if position < len(tokens) else ""


def _pragma_name(text: str) -> str:
    tokens = _tokens(text)
    return tokens[1].text.strip('"').lower() if len(tokens) > 1 else ""


def _check_functions(text: str) -> None:
    tokens = _tokens(text)
    for token, following in itertools.pairwise(tokens):
        if token.kind not in ("identifier", "keyword") or following.text != "(":
            continue
        name = token.text.strip('"')
        if name.lower() in STATEFUL_FUNCTIONS:
            raise ReadOnlyError(
                f"function {name}() refused: it changes DuckDB's state or runs SQL given "
                f"as text, and this connection only reads; {WRITE_HINT}"
            )


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= 80 else flat[:77] + "..."
