"""The statement splitter: quotes, comments, trigger bodies, CRLF, missing trailing ';'."""

from __future__ import annotations

import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from d1sync.sql import is_transaction_control, split_statements, split_with_lines

# -- generated statements -------------------------------------------------------------------------------

_WORD = st.sampled_from(["a", "b", "x1", "total", "name", "END", "BEGIN", "CASE"])
# Text inside literals and comments may hold anything that breaks a naive splitter.
_TRICKY = st.text(alphabet=st.sampled_from(list("ab ;\n-*/'\"`[]BEGINEND")), max_size=12)


@st.composite
def _literal(draw: st.DrawFn) -> str:
    body = draw(_TRICKY)
    kind = draw(st.sampled_from(["'", '"', "`", "["]))
    if kind == "[":
        return "[" + body.replace("]", "") + "]"
    return kind + body.replace(kind, kind * 2) + kind


@st.composite
def _select(draw: st.DrawFn) -> str:
    items = draw(st.lists(st.one_of(_literal(), _WORD.map(lambda w: f"{w!s}1")), min_size=1, max_size=4))
    inline_comment = draw(st.sampled_from(["", " /* ; */ ", " -- ; 'x\n"]))
    return "SELECT " + ("," + inline_comment).join(items)


@st.composite
def _trigger(draw: st.DrawFn) -> str:
    body = draw(st.lists(_select(), min_size=1, max_size=3))
    name = draw(st.sampled_from(["trg", "t_after", "[odd;name]"]))
    return f"CREATE TRIGGER {name} AFTER INSERT ON t BEGIN\n  " + ";\n  ".join(body) + ";\nEND"


_STATEMENT = st.one_of(_select(), _trigger(), _literal().map(lambda lit: f"INSERT INTO t (v) VALUES ({lit})"))
_SEPARATOR = st.sampled_from([";\n", ";", ";\n\n-- note; with 'quote\n", "; /* block ; 'x' */\n", " ;\n"])


@settings(max_examples=300, deadline=None)
@given(
    statements=st.lists(_STATEMENT, min_size=1, max_size=6),
    separators=st.lists(_SEPARATOR, min_size=6, max_size=6),
    trailing=st.sampled_from(["", ";", ";\n", ";\n-- end\n", "\n"]),
    crlf=st.booleans(),
    leading=st.sampled_from(["", "-- header; 'x'\n", "/* ; */\n", "\n\n"]),
)
def test_joined_statements_split_back_to_exactly_the_statements(
    statements: list[str], separators: list[str], trailing: str, crlf: bool, leading: str
) -> None:
    text = leading + "".join(s + sep for s, sep in zip(statements[:-1], separators, strict=False))
    text += statements[-1] + trailing
    if crlf:
        text = text.replace("\n", "\r\n")
    assert split_statements(text) == statements


@settings(max_examples=200, deadline=None)
@given(statements=st.lists(_STATEMENT, min_size=1, max_size=5))
def test_every_split_statement_is_one_complete_sqlite_statement(statements: list[str]) -> None:
    for part in split_statements(";\n".join(statements)):
        assert sqlite3.complete_statement(part + ";")
        # One statement: SQLite's own tokenizer finds no earlier end.
        assert not any(sqlite3.complete_statement(part[: i + 1]) for i, ch in enumerate(part[:-1]) if ch == ";"), part


@settings(max_examples=200, deadline=None)
@given(statements=st.lists(_STATEMENT, min_size=1, max_size=5), crlf=st.booleans())
def test_line_numbers_point_at_each_statement(statements: list[str], crlf: bool) -> None:
    text = ";\n\n".join(statements) + ";"
    if crlf:
        text = text.replace("\n", "\r\n")
    lines = text.replace("\r\n", "\n").split("\n")
    for part in split_with_lines(text):
        assert lines[part.line - 1].startswith(part.sql.split("\n")[0])


# -- fixed cases ------------------------------------------------------------------------------------------


def test_semicolons_inside_quotes_and_comments_do_not_split() -> None:
    text = "INSERT INTO t VALUES ('a;b', \"c;d\", `e;f`, [g;h]); -- x; y\n/* p; q */ SELECT 'it''s;'"
    assert split_statements(text) == [
        "INSERT INTO t VALUES ('a;b', \"c;d\", `e;f`, [g;h])",
        "SELECT 'it''s;'",
    ]


def test_trigger_body_stays_one_statement() -> None:
    text = (
        "CREATE TABLE t (a);\n"
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n"
        "  UPDATE t SET a = CASE WHEN a > 1 THEN 0 ELSE a END;\n"
        "  INSERT INTO t VALUES (1);\n"
        "END;\n"
        "SELECT 1"
    )
    parts = split_with_lines(text)
    assert [p.line for p in parts] == [1, 2, 6]
    assert parts[1].sql.startswith("CREATE TRIGGER") and parts[1].sql.endswith("END")


def test_missing_trailing_semicolon_and_crlf_are_fine() -> None:
    assert split_statements("CREATE TABLE a (x);\r\nCREATE TABLE b (y)\r\n") == [
        "CREATE TABLE a (x)",
        "CREATE TABLE b (y)",
    ]


def test_only_comments_give_no_statements() -> None:
    assert split_statements("-- Migration number: 0001 \t 2026-01-01T00:00:00.000Z\n") == []


def test_transaction_statements_are_recognised_but_trigger_begin_is_not() -> None:
    parts = split_statements("BEGIN TRANSACTION; CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; END; COMMIT")
    assert [is_transaction_control(p) for p in parts] == [True, False, True]
    assert is_transaction_control("savepoint a") and is_transaction_control("ROLLBACK")
    assert not is_transaction_control("INSERT OR ROLLBACK INTO t VALUES (1)")
