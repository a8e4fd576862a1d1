"""The conformance table: SQL the emulator must answer exactly as workerd's D1 engine does.

Each :class:`Case` runs on a fresh database: its ``setup`` statements one request each, then its request (one
``sql`` with ``params``, or a ``batch``). The engine's answers live in ``fixtures/engine.json``, keyed by
:attr:`Case.key`; ``make conformance-fixtures`` records them again from the pinned engine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from d1sync.sync.codec import column_expr, encode_row

__all__ = ["CASES", "Case"]


@dataclass(frozen=True)
class Case:
    group: str
    sql: str = ""
    params: tuple[Any, ...] = ()
    setup: tuple[str, ...] = ()
    batch: tuple[tuple[str, tuple[Any, ...]], ...] | None = None
    known: str | None = None  # a known difference (docs/emulator.md): the emulator answers otherwise

    @property
    def key(self) -> str:
        body = json.dumps([self.setup, self.sql, self.params, self.batch], sort_keys=True, default=str)
        return hashlib.sha1(body.encode()).hexdigest()[:16]

    def describe(self) -> str:
        text = self.sql if self.batch is None else " | ".join(sql for sql, _ in self.batch)
        return text if len(text) <= 120 else text[:117] + "..."


CASES: list[Case] = []


def add(group: str, sql: str = "", *params: Any, setup: tuple[str, ...] = (), **kwargs: Any) -> None:
    CASES.append(Case(group, sql, tuple(params), tuple(setup), **kwargs))


def batch(group: str, *items: tuple[str, tuple[Any, ...]], setup: tuple[str, ...] = ()) -> None:
    CASES.append(Case(group, setup=tuple(setup), batch=tuple(items)))


# -- every function SQLite 3.47 has, called with NULLs: refused, missing or there -----------------------------
FUNCTIONS: dict[str, int] = {
    "abs": 1,
    "acos": 1,
    "acosh": 1,
    "asin": 1,
    "asinh": 1,
    "atan": 1,
    "atan2": 2,
    "atanh": 1,
    "avg": 1,
    "bm25": 1,
    "ceil": 1,
    "ceiling": 1,
    "changes": 0,
    "char": 1,
    "coalesce": 1,
    "concat": 1,
    "concat_ws": 1,
    "cos": 1,
    "cosh": 1,
    "count": 0,
    "cume_dist": 0,
    "current_date": 0,
    "current_time": 0,
    "current_timestamp": 0,
    "date": 1,
    "datetime": 1,
    "degrees": 1,
    "dense_rank": 0,
    "exp": 1,
    "first_value": 1,
    "floor": 1,
    "format": 1,
    "fts3_tokenizer": 1,
    "fts5": 1,
    "fts5_get_locale": 1,
    "fts5_locale": 2,
    "fts5_source_id": 0,
    "geopoly_area": 1,
    "geopoly_bbox": 1,
    "geopoly_blob": 1,
    "geopoly_ccw": 1,
    "geopoly_contains_point": 3,
    "geopoly_debug": 1,
    "geopoly_group_bbox": 1,
    "geopoly_json": 1,
    "geopoly_overlap": 2,
    "geopoly_regular": 4,
    "geopoly_svg": 1,
    "geopoly_within": 2,
    "geopoly_xform": 7,
    "glob": 2,
    "group_concat": 1,
    "hex": 1,
    "highlight": 1,
    "ifnull": 2,
    "iif": 3,
    "instr": 2,
    "json": 1,
    "json_array": 1,
    "json_array_length": 1,
    "json_error_position": 1,
    "json_extract": 1,
    "json_group_array": 1,
    "json_group_object": 2,
    "json_insert": 1,
    "json_object": 1,
    "json_patch": 2,
    "json_pretty": 1,
    "json_quote": 1,
    "json_remove": 1,
    "json_replace": 1,
    "json_set": 1,
    "json_type": 1,
    "json_valid": 1,
    "jsonb": 1,
    "jsonb_array": 1,
    "jsonb_extract": 1,
    "jsonb_group_array": 1,
    "jsonb_group_object": 2,
    "jsonb_insert": 1,
    "jsonb_object": 1,
    "jsonb_patch": 2,
    "jsonb_remove": 1,
    "jsonb_replace": 1,
    "jsonb_set": 1,
    "julianday": 1,
    "lag": 1,
    "last_insert_rowid": 0,
    "last_value": 1,
    "lead": 1,
    "length": 1,
    "like": 2,
    "likelihood": 2,
    "likely": 1,
    "ln": 1,
    "load_extension": 1,
    "log": 1,
    "log10": 1,
    "log2": 1,
    "lower": 1,
    "ltrim": 1,
    "match": 2,
    "matchinfo": 1,
    "max": 1,
    "min": 1,
    "mod": 2,
    "nth_value": 2,
    "ntile": 1,
    "nullif": 2,
    "octet_length": 1,
    "offsets": 1,
    "optimize": 1,
    "percent_rank": 0,
    "pi": 0,
    "pow": 2,
    "power": 2,
    "printf": 1,
    "quote": 1,
    "radians": 1,
    "random": 0,
    "randomblob": 1,
    "rank": 0,
    "replace": 3,
    "round": 1,
    "row_number": 0,
    "rtreecheck": 1,
    "rtreedepth": 1,
    "rtreenode": 2,
    "rtrim": 1,
    "sign": 1,
    "sin": 1,
    "sinh": 1,
    "snippet": 1,
    "sqlite_compileoption_get": 1,
    "sqlite_compileoption_used": 1,
    "sqlite_log": 2,
    "sqlite_source_id": 0,
    "sqlite_version": 0,
    "sqrt": 1,
    "strftime": 1,
    "string_agg": 2,
    "substr": 2,
    "substring": 2,
    "subtype": 1,
    "sum": 1,
    "tan": 1,
    "tanh": 1,
    "time": 1,
    "timediff": 2,
    "total": 1,
    "total_changes": 0,
    "trim": 1,
    "trunc": 1,
    "typeof": 1,
    "unhex": 1,
    "unicode": 1,
    "unixepoch": 1,
    "unlikely": 1,
    "upper": 1,
    "zeroblob": 1,
}
for name, arity in FUNCTIONS.items():
    add("function-exists", f'SELECT typeof("{name}"({", ".join(["NULL"] * arity)})) AS t')

# -- functions with values: the modern SQLite D1 runs ----------------------------------------------------------
for expression in [
    "concat('a', 1, NULL, 2.5)",
    "concat_ws('-', 'a', NULL, 'b')",
    "octet_length('é')",
    "unhex('00ff') = x'00ff'",
    "timediff('2024-01-02', '2024-01-01')",
    "timediff('2024-03-01 12:00', '2023-02-27')",
    "hex(jsonb('[1]'))",
    "json('{a:1, b:[2,],}')",
    "json(jsonb('{\"x\": 1}'))",
    "json_valid('{a:1}', 2)",
    "1_000 + 2_000",
    "0x1_F",
    "1_0.5_0",
    "datetime('2024-01-01 00:00:00.123', 'subsec')",
    "unixepoch('2024-01-01 00:00:00.5', 'subsec')",
    "time('12:34:56.789', 'subsec')",
    "format('%d-%s', 1, 'x')",
    "printf('%05.1f', 3.14159)",
    "pow(2, 10)",
    "ceil(1.2)",
    "floor(-1.5)",
    "log(100)",
    "log(2, 8)",
    "ln(1)",
    "log2(8)",
    "exp(0)",
    "sqrt(16)",
    "pi() > 3",
    "mod(7, 3)",
    "trunc(2.7)",
    "sign(-3)",
    "degrees(pi())",
    "radians(180) > 3",
    "abs(-9223372036854775807)",
    "round(2.5)",
    "round(-2.5)",
    "round(1.005, 2)",
    "instr('hello', 'l')",
    "substr('hello', 2, 3)",
    "substring('hello', -3)",
    "replace('aaa', 'a', 'bb')",
    "trim('  x  ')",
    "ltrim('xxy', 'x')",
    "rtrim('yxx', 'x')",
    "upper('é')",
    "lower('ÀB')",
    "unicode('é')",
    "char(72, 105)",
    "quote('it''s')",
    "quote(x'00')",
    "hex(12)",
    "length(x'0001')",
    "length('é')",
    "typeof(1.0)",
    "typeof(9223372036854775807)",
    "typeof(9223372036854775808)",
    "iif(1, 'a', 'b')",
    "coalesce(NULL, 2)",
    "ifnull(NULL, 'x')",
    "nullif(1, 1)",
    "likely(1)",
    "zeroblob(3)",
    "json_array(1, 'a', NULL)",
    "json_object('a', 1)",
    "json_extract('{\"a\":[1,2]}', '$.a[1]')",
    "'{\"a\":{\"b\":3}}' -> '$.a'",
    "'{\"a\":{\"b\":3}}' ->> '$.a.b'",
    "json_set('{}', '$.x', 1)",
    "json_insert('[1]', '$[#]', 2)",
    "json_remove('[1,2]', '$[0]')",
    "json_patch('{\"a\":1}', '{\"b\":2}')",
    "json_type('[1]')",
    "json_array_length('[1,2,3]')",
    "json_quote('x')",
    "json_replace('{\"a\":1}', '$.a', 2)",
    "jsonb_array(1, 2) = jsonb('[1,2]')",
    "json(jsonb_object('k', 'v'))",
    "json_group_array(1)",
    "date('2024-02-29', '+1 year')",
    "date('2024-01-31', '+1 month')",
    "julianday('2000-01-01')",
    "strftime('%Y-%m-%d %H:%M:%S', '2024-03-05 14:07:09')",
    "strftime('%j %w %s', '2024-03-05')",
    "datetime(0, 'unixepoch')",
    "datetime(1700000000.5, 'unixepoch', 'subsec')",
    "date('2024-03-05', 'weekday 0')",
    "datetime('2024-03-05 10:00', '+90 minutes')",
    "date('now') IS NOT NULL",
    "typeof(current_timestamp)",
    "9223372036854775807 + 1",
    "-9223372036854775808 - 1",
    "1 / 0",
    "1 % 0",
    "5 / 2",
    "5.0 / 2",
    "'10' + 5",
    "'abc' < 'abd'",
    "'a' = 'A'",
    "'a' LIKE 'A'",
    "'a' GLOB 'A'",
    "x'41' = 'A'",
    "NULL = NULL",
    "NULL IS NULL",
    "CAST('12abc' AS INTEGER)",
    "CAST(1.9 AS INTEGER)",
    "CAST(x'3132' AS TEXT)",
    "CAST('1e3' AS REAL)",
    "CAST(9007199254740993 AS TEXT)",
    "1e308 * 10",
    "-1e308 * 10",
    "0.1 + 0.2",
    "1.5e-7",
    "100000000000000000000.0",
    "123456789012345678",
    "2.0",
    "-0.0",
    "1e21",
    "1e20",
    "4.35",
    "1.0 / 3",
]:
    add("value", f"SELECT {expression} AS v")
for code in [
    "%e",
    "%k",
    "%l",
    "%p",
    "%P",
    "%G",
    "%g",
    "%V",
    "%u",
    "%U",
    "%W",
    "%f",
    "%J",
    "%I",
    "%F",
    "%T",
    "%R",
    "%C",
    "%y",
    "%b",
    "%a",
    "%h",
]:
    add("strftime", f"SELECT strftime('{code}', '2024-03-05 14:07:09.123') AS v")
add("aggregate", "SELECT group_concat(v, ',' ORDER BY v DESC) AS g FROM (SELECT 1 AS v UNION SELECT 2 UNION SELECT 3)")
add("aggregate", "SELECT string_agg(v, ';' ORDER BY v) AS g FROM (SELECT 'b' AS v UNION SELECT 'a')")
add("aggregate", "SELECT json_group_array(v ORDER BY v) AS g FROM (SELECT 2 AS v UNION SELECT 1)")
add("aggregate", "SELECT count(*), sum(v), total(v), avg(v), min(v), max(v) FROM (SELECT 1 AS v UNION SELECT 4)")
add("aggregate", "SELECT v, row_number() OVER (ORDER BY v DESC) AS n FROM (SELECT 1 AS v UNION SELECT 2)")
add("aggregate", "SELECT v, lag(v) OVER (ORDER BY v) AS p, sum(v) OVER () AS s FROM (SELECT 1 AS v UNION SELECT 5)")
add("aggregate", "SELECT percent_rank() OVER (ORDER BY v) AS r FROM (SELECT 1 AS v UNION SELECT 2 UNION SELECT 3)")
add("aggregate", "SELECT median(1)")
add("aggregate", "SELECT percentile(v, 50) FROM (SELECT 1 AS v)")
for text in ["{a:1}", "[1,2,]", "{'a': 'b'}", "{a: 0x1F}", "{a: Infinity}", "{a: .5}", "// c\n[1]", "[1,2] garbage"]:
    add("json5", "SELECT json(?) AS v", text)

# -- PRAGMAs: D1's allow-list and everything else ----------------------------------------------------------------
PRAGMAS = [
    "analysis_limit",
    "application_id",
    "auto_vacuum",
    "automatic_index",
    "busy_timeout",
    "cache_size",
    "cache_spill",
    "case_sensitive_like",
    "cell_size_check",
    "checkpoint_fullfsync",
    "collation_list",
    "compile_options",
    "count_changes",
    "data_version",
    "database_list",
    "default_cache_size",
    "defer_foreign_keys",
    "empty_result_callbacks",
    "encoding",
    "foreign_key_check",
    "foreign_keys",
    "freelist_count",
    "full_column_names",
    "fullfsync",
    "function_list",
    "hard_heap_limit",
    "ignore_check_constraints",
    "incremental_vacuum",
    "integrity_check",
    "journal_mode",
    "journal_size_limit",
    "legacy_alter_table",
    "legacy_file_format",
    "locking_mode",
    "max_page_count",
    "mmap_size",
    "module_list",
    "optimize",
    "page_count",
    "page_size",
    "pragma_list",
    "query_only",
    "quick_check",
    "read_uncommitted",
    "recursive_triggers",
    "reverse_unordered_selects",
    "schema_version",
    "secure_delete",
    "short_column_names",
    "shrink_memory",
    "soft_heap_limit",
    "stats",
    "synchronous",
    "table_list",
    "temp_store",
    "temp_store_directory",
    "threads",
    "trusted_schema",
    "user_version",
    "vdbe_trace",
    "wal_autocheckpoint",
    "wal_checkpoint",
    "writable_schema",
]
for name in PRAGMAS:
    add("pragma", f"PRAGMA {name}")
for name in (
    "foreign_keys",
    "defer_foreign_keys",
    "case_sensitive_like",
    "recursive_triggers",
    "legacy_alter_table",
    "ignore_check_constraints",
    "reverse_unordered_selects",
):
    for value in ("ON", "off", "1", "'yes'", "2", "maybe"):
        add("pragma-set", f"PRAGMA {name} = {value}")
for sql in [
    "PRAGMA user_version = 3",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA wal_checkpoint(TRUNCATE)",
    "PRAGMA optimize(2)",
    "PRAGMA optimize = 0x10002",
    "PRAGMA optimize('x')",
    "PRAGMA quick_check(5)",
    "PRAGMA quick_check(t)",
    "PRAGMA quick_check(_cf_METADATA)",
    "PRAGMA table_info(t)",
    "PRAGMA table_xinfo(t)",
    "PRAGMA index_list(t)",
    "PRAGMA index_info(i)",
    "PRAGMA index_xinfo(i)",
    "PRAGMA foreign_key_list(t)",
    "PRAGMA foreign_key_check(t)",
    "PRAGMA foreign_key_check",
    "PRAGMA table_info(_cf_METADATA)",
    "PRAGMA index_list(_cf_METADATA)",
    "PRAGMA main.table_info(t)",
    "PRAGMA temp.table_list",
    "PRAGMA main.table_list",
    "PRAGMA data_version = 1",
    "SELECT name, type FROM pragma_table_list WHERE schema = 'main' ORDER BY name",
    "SELECT * FROM pragma_table_info('t')",
    "SELECT * FROM pragma_user_version",
    "SELECT * FROM pragma_page_count",
    "SELECT count(*) FROM pragma_function_list",
    "SELECT * FROM pragma_index_list('t')",
]:
    add("pragma-args", sql, setup=("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", "CREATE INDEX i ON t (v)"))

# -- what D1 refuses to create or read ---------------------------------------------------------------------------
for sql in [
    "CREATE TEMP TABLE x (a)",
    "CREATE TEMPORARY VIEW v AS SELECT 1",
    "CREATE TEMP TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END",
    "CREATE TEMP VIEW v AS SELECT 1",
    "CREATE VIRTUAL TABLE f3 USING fts3(a)",
    "CREATE VIRTUAL TABLE f4 USING fts4(a)",
    "CREATE VIRTUAL TABLE r USING rtree(id, x0, x1)",
    "CREATE VIRTUAL TABLE g USING geopoly()",
    "CREATE VIRTUAL TABLE d USING dbstat",
    "CREATE VIRTUAL TABLE s USING json_each",
    "CREATE VIRTUAL TABLE f5 USING fts5(a)",
    "CREATE VIRTUAL TABLE f5 USING FTS5(a, b, tokenize = 'porter')",
    "CREATE TABLE _cf_x (a)",
    "CREATE TABLE _CF_x (a)",
    "CREATE TABLE _cfx (a)",
    "CREATE VIEW _cf_v AS SELECT 1",
    "CREATE INDEX _cf_i ON t (v)",
    "CREATE INDEX i2 ON t (v)",
    "CREATE TRIGGER _cf_tr AFTER INSERT ON t BEGIN SELECT 1; END",
    "SELECT * FROM _cf_METADATA",
    "SELECT * FROM _cf_metadata",
    "SELECT count(*) FROM _cf_METADATA",
    "SELECT key FROM _cf_METADATA",
    "INSERT INTO _cf_METADATA VALUES (9, 1)",
    "UPDATE _cf_METADATA SET value = 1",
    "DELETE FROM _cf_METADATA",
    "DROP TABLE _cf_METADATA",
    "ALTER TABLE _cf_METADATA ADD COLUMN x",
    "ALTER TABLE t RENAME TO _cf_t",
    "SELECT * FROM _cf_KV",
    "SELECT type, name, tbl_name FROM sqlite_master ORDER BY name",
    "SELECT sql FROM sqlite_master WHERE name = '_cf_METADATA'",
    "SELECT count(*) FROM sqlite_schema",
    "SELECT * FROM dbstat",
    "SELECT * FROM sqlite_dbpage",
    "SELECT * FROM generate_series(1, 3)",
    "SELECT * FROM sqlite_temp_master",
    "SELECT * FROM temp.sqlite_master",
    "ATTACH ':memory:' AS m",
    "DETACH m",
    "VACUUM",
    "VACUUM INTO '/tmp/d1sync-conformance-copy.db'",
    "ANALYZE",
    "ANALYZE t",
    "REINDEX",
    "REINDEX t",
    "SELECT load_extension('x')",
    "SELECT * FROM json_each('[1,2]')",
    "SELECT * FROM json_tree('{\"a\":1}')",
    "INSERT INTO sqlite_master VALUES ('table', 'x', 'x', 0, '')",
    "CREATE TABLE sqlite_x (a)",
    "DROP TABLE sqlite_master",
    "SELECT * FROM sqlite_stat1",
    "CREATE VIRTUAL TABLE v5 USING fts5vocab(f, 'row')",
]:
    add("authorizer", sql, setup=("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",))
add("authorizer", "SELECT name FROM sqlite_master ORDER BY name")
add(
    "authorizer",
    "SELECT a FROM f WHERE f MATCH 'hello'",
    setup=("CREATE VIRTUAL TABLE f USING fts5(a)", "INSERT INTO f VALUES ('hello world')"),
)
add(
    "authorizer",
    "SELECT highlight(f, 0, '[', ']') AS h, bm25(f) < 0 AS b FROM f WHERE f MATCH 'world'",
    setup=("CREATE VIRTUAL TABLE f USING fts5(a)", "INSERT INTO f VALUES ('hello world')"),
)
add("authorizer", "DROP TABLE f", setup=("CREATE VIRTUAL TABLE f USING fts5(a)",))
add("authorizer", "SELECT name FROM sqlite_master ORDER BY name", setup=("CREATE VIRTUAL TABLE f USING fts5(a)",))

# -- transactions --------------------------------------------------------------------------------------------------
for sql in [
    "BEGIN",
    "BEGIN TRANSACTION",
    "BEGIN IMMEDIATE",
    "BEGIN EXCLUSIVE",
    "COMMIT",
    "END",
    "ROLLBACK",
    "SAVEPOINT a",
    "RELEASE a",
    "RELEASE SAVEPOINT a",
    "ROLLBACK TO a",
    "SELECT 1; BEGIN",
    "BEGIN; SELECT 1",
]:
    add("transaction", sql)


# -- limits -----------------------------------------------------------------------------------------------------
def _cols(n: int) -> str:
    return ", ".join(f"c{i}" for i in range(n))


add("limit", f"CREATE TABLE w ({_cols(100)})")
add("limit", f"CREATE TABLE w ({_cols(101)})")
add("limit", "ALTER TABLE w ADD COLUMN extra", setup=(f"CREATE TABLE w ({_cols(100)})",))
add("limit", "SELECT " + ", ".join(str(i) for i in range(100)))
add("limit", "SELECT " + ", ".join(str(i) for i in range(101)))
add("limit", "SELECT * FROM (SELECT 1 AS a, 2 AS b) JOIN (SELECT " + _cols(99).replace("c", "99 AS c") + ")")
for n in (99, 100, 101):
    add("limit", "SELECT " + " + ".join(["1"] * n) + " AS v")
for n in (98, 99, 100, 101):
    add("limit", "SELECT " + "abs(" * n + "1" + ")" * n + " AS v")
for n in (5, 6):
    add("limit", " UNION ".join(f"SELECT {i}" for i in range(n)))
    add("limit", " UNION ALL ".join(f"SELECT {i}" for i in range(n)))
    add("limit", " INTERSECT ".join("SELECT 1" for _ in range(n)))
add("limit", "VALUES (1), (2), (3), (4), (5), (6), (7)")
add(
    "limit",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1000) SELECT count(*) AS c FROM r",
)
for pattern in ["x" * 50, "x" * 51, "%" * 50, "%" * 51, "é" * 25, "é" * 26, "_" * 51]:
    add("limit", "SELECT 'x' LIKE ? AS l", pattern)
    add("limit", "SELECT 'x' GLOB ? AS g", pattern)
add("limit", f"SELECT 'x' LIKE '{'a' * 51}' AS l")
add("limit", f"SELECT 'x' LIKE 'a%' ESCAPE '{'b'}' AS l")
add("limit", "SELECT " + ", ".join("?" for _ in range(100)) + " AS last", *range(100))
add("limit", "SELECT " + ", ".join("?" for _ in range(101)), *range(101))
add("limit", "SELECT ?100 AS v", *range(100))
add("limit", "SELECT ?101 AS v", *range(101))
add("limit", "SELECT ?0 AS v")
add("limit", "SELECT :a, :b AS v", 1, 2)
add("limit", "SELECT @a, $b, ?3 AS v", 1, 2, 3)
for size in (99_999, 100_000, 100_001):
    head, tail = "SELECT '", "' AS s"
    add("limit", head + "x" * (size - len(head) - len(tail)) + tail)
add("limit", "SELECT 1; SELECT '" + "x" * 99_980 + "' AS s")
add("limit", "SELECT '" + "x" * 99_980 + "' AS s; SELECT 1")
for size in (2_000_000, 2_000_001, 2_200_000, 2_200_001):
    add("limit", "SELECT length(?) AS n", "x" * size)
    add("limit", f"SELECT length(zeroblob({size})) AS n")
add("limit", "SELECT length(?) AS n", "é" * 1_100_000)
add("limit", "SELECT length(?) AS n", "é" * 1_100_001)
add("limit", "SELECT length(hex(zeroblob(1100000))) AS n")
add("limit", "SELECT length(hex(zeroblob(1100001))) AS n")
add("limit", "INSERT INTO b VALUES (?, ?)", "x" * 1_100_000, "y" * 1_100_000, setup=("CREATE TABLE b (x, y)",))
add("limit", "INSERT INTO b VALUES (?, ?)", "x" * 1_000_000, "y" * 1_000_000, setup=("CREATE TABLE b (x, y)",))
add("limit", "SELECT length(replace(zeroblob(10), x'00', ?)) AS n", "x" * 300_000)
for spec in [
    "'%200000d', 1",
    "'%.200000f', 1",
    "'%0*d', 150000, 1",
    "'%.*c', 200000, 'x'",
    "'%-150000s|', 'x'",
    "'%*.*f', 150000, 150000, 1.5",
    "'%s', '" + "y" * 1000 + "'",
    "'%.100000c', 'z'",
    "'%100001s', 'q'",
    "'%q %Q %w', 'it''s', NULL, 'x'",
    "'%%%d%%', 5",
    "'%,d', 1234567",
    "'%!.20g', 0.1",
]:
    add("printf", f"SELECT length(printf({spec})) AS n, substr(printf({spec}), 1, 40) AS head")
    add("printf", f"SELECT length(format({spec})) AS n")
add("printf", "SELECT length(printf('%s', ?)) AS n", "y" * 150_000)
add(
    "limit",
    "INSERT INTO t VALUES (1)",
    setup=(
        "CREATE TABLE t (n)",
        "CREATE TRIGGER tr AFTER INSERT ON t WHEN new.n < 20 BEGIN INSERT INTO t VALUES (new.n + 1); END",
        "PRAGMA recursive_triggers = ON",
    ),
)
add("limit", "SELECT json_array(" + ", ".join(str(i) for i in range(127)) + ") IS NOT NULL AS ok")
add("limit", "SELECT json_array(" + ", ".join(str(i) for i in range(128)) + ") IS NOT NULL AS ok")

# -- error text --------------------------------------------------------------------------------------------------
for sql in [
    "SELEC 1",
    "SELECT",
    "SELECT (1",
    "SELECT 1 FROM",
    "  SELECT nosuch(1)",
    "/* c */ SELECT nosuch(1)",
    "SELECT nosuch(1)",
    "SELECT * FROM nope",
    "SELECT nope FROM t",
    "SELECT t.nope FROM t",
    "INSERT INTO t (nope) VALUES (1)",
    "INSERT INTO t VALUES (1, 2, 3)",
    "SELECT abs()",
    "SELECT abs(1, 2)",
    "SELECT 1 AS a ORDER BY 2",
    "SELECT count(*) GROUP BY 1",
    "CREATE TABLE t (a)",
    "DROP TABLE nope",
    "DROP INDEX nope",
    "ALTER TABLE nope ADD x",
    "SELECT 'unterminated",
    'SELECT "no such"',
    "SELECT 1; SELECT nosuch(1)",
    "SELECT 1;\nSELECT nosuch(1)",
    "SELECT 1; /* c */ SELECT nosuch(1)",
    "SELECT 1;\n\n   SELECT * FROM nope",
    "SELECT 1; SELEC 2",
    "SELECT 1;",
    "SELECT 1;  ",
    "SELECT 1;\n",
    "SELECT 1;;",
    "SELECT 1; ;",
    "SELECT 1; -- c",
    "SELECT 1 -- c",
    "SELECT 1; /* c */",
    "SELECT 1 /* c */;",
    "-- only a comment",
    "/* only */",
    ";",
    "  -- indented comment",
    "\n-- comment\nSELECT 2 AS v",
    "-- c\nSELECT 3 AS v",
    "SELECT 1; SELECT 2 AS b",
    "SELECT 1 AS a;SELECT 2 AS b;SELECT 3 AS c",
    "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; SELECT 2; END; SELECT 4 AS v",
    "SELECT max(v) FROM t WHERE v MATCH 'x'",
    "SELECT 1 UNION SELECT 1, 2",
    "INSERT INTO t DEFAULT VALUES RETURNING nope",
    "SELECT * FROM t, t",
    "WITH x AS (SELECT 1) SELECT * FROM y",
    "SELECT json('{bad')",
    "SELECT json_extract('[1]', 'x')",
    "SELECT CAST(1 AS)",
    "UPDATE t SET id = 'x' WHERE 0 RETURNING *",
]:
    add("error", sql, setup=("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",))
constraints = (
    "CREATE TABLE p (id INTEGER PRIMARY KEY)",
    "CREATE TABLE c (id INTEGER PRIMARY KEY, p REFERENCES p (id))",
    "CREATE TABLE u (a UNIQUE, b NOT NULL DEFAULT 0, c CHECK (c > 0), d INTEGER)",
    "CREATE TABLE s (a INTEGER, b TEXT, c ANY) STRICT",
    "CREATE TABLE k (x, y, PRIMARY KEY (x, y))",
    "CREATE TABLE r (id INTEGER PRIMARY KEY) WITHOUT ROWID",
    "INSERT INTO u (a, c) VALUES (1, 1)",
    "INSERT INTO k VALUES (1, 1)",
    "INSERT INTO p VALUES (1)",
)
for sql in [
    "INSERT INTO u (a, c) VALUES (1, 1)",
    "INSERT INTO u (a, b, c) VALUES (2, NULL, 1)",
    "INSERT INTO u (a, c) VALUES (3, 0)",
    "INSERT INTO c VALUES (1, 9)",
    "INSERT INTO k VALUES (1, 1)",
    "INSERT INTO p VALUES (1)",
    "INSERT INTO s VALUES ('x', 1, 1)",
    "INSERT INTO s VALUES (1, x'00', 1)",
    "INSERT INTO s VALUES (1.5, 'a', 1)",
    "INSERT INTO s VALUES (1.0, 'a', 1)",
    "INSERT INTO s VALUES ('12', 'a', 1)",
    "INSERT INTO p VALUES ('x')",
    "INSERT INTO r VALUES (NULL)",
    "INSERT OR IGNORE INTO u (a, c) VALUES (1, 1)",
    "INSERT OR REPLACE INTO u (a, c) VALUES (1, 5)",
    "INSERT INTO u (a, c) VALUES (1, 1) ON CONFLICT (a) DO UPDATE SET c = 7",
    "DELETE FROM p",
    "UPDATE u SET c = -1",
    "INSERT INTO u (a, c) VALUES (1, 1), (5, 1)",
]:
    add("constraint", sql, setup=constraints)
add("constraint", "INSERT INTO c VALUES (1, 9)", setup=constraints[:2] + ("PRAGMA foreign_keys = OFF",))
batch("constraint", ("PRAGMA defer_foreign_keys = ON", ()), ("INSERT INTO c VALUES (1, 9)", ()), setup=constraints[:2])
batch(
    "constraint",
    ("PRAGMA defer_foreign_keys = ON", ()),
    ("INSERT INTO c VALUES (1, 9)", ()),
    ("INSERT INTO p VALUES (9)", ()),
    setup=constraints[:2],
)

# -- parameters and bindings ------------------------------------------------------------------------------------
for params in [(), (1,), (1, 2), (None,), ("1",)]:
    add("binding", "SELECT ? AS v", *params)
    add("binding", "SELECT 1 AS v", *params)
    add("binding", "SELECT ?2 AS v", *params)
for sql, params in [
    ("SELECT ?; SELECT 1", (1,)),
    ("SELECT ?; SELECT 1", ()),
    ("SELECT 1; SELECT ? AS v", (1,)),
    ("SELECT ?; SELECT ?", (1, 2)),
    ("SELECT 1; SELECT ? AS v", ()),
    ("SELECT 1; SELECT 2", (1,)),
    ("SELECT :x AS v", (5,)),
    ("SELECT :x, :x AS v", (5,)),
    ("SELECT ?1, ?1 AS v", (5,)),
    ("SELECT ?, ?1 AS v", (5,)),
    ("SELECT ?3 AS v", (1, 2, 3)),
]:
    add("binding", sql, *params)
for value in [
    1,
    0,
    -1,
    2.5,
    1.0,
    1e300,
    -0.0,
    9007199254740993,
    123456789012345678901234567890,
    True,
    False,
    None,
    "",
    "x",
    "9007199254740993",
    "1",
    "1.0",
    "é",
    "\x00a",
    [1, 2],
    [],
    [256],
    ["a"],
    {"a": 1},
    {},
    [[1]],
    [1.5],
]:
    add("param", "SELECT typeof(?) AS t, ? AS v", value, value)
for value in [1, 2.5, True, "7", "7.0", "abc", None, 9007199254740993, [0, 255]]:
    for column in ("INTEGER", "REAL", "TEXT", "BLOB", "NUMERIC", "ANY"):
        add(
            "affinity",
            "INSERT INTO a VALUES (?) RETURNING typeof(v) AS t, v",
            value,
            setup=(f"CREATE TABLE a (v {column})",),
        )
add(
    "affinity",
    "INSERT INTO a VALUES (?) RETURNING typeof(v) AS t, v",
    True,
    setup=("CREATE TABLE a (v INTEGER) STRICT",),
)
add(
    "affinity",
    "INSERT INTO a VALUES (?) RETURNING typeof(v) AS t, v",
    2.5,
    setup=("CREATE TABLE a (v INTEGER) STRICT",),
)
add(
    "affinity",
    "INSERT INTO a VALUES (?) RETURNING typeof(v) AS t, v",
    2.0,
    setup=("CREATE TABLE a (v INTEGER) STRICT",),
)
add("param", "SELECT ? / 2 AS v", 5)
add("param", "SELECT ? + 1 AS v", "5")
add("param", "SELECT ? = 1 AS v", True)
add("param", "SELECT ? || '' AS v", True)
add("param", "SELECT ? || '' AS v", 10)

# -- values out ----------------------------------------------------------------------------------------------------
for expression in [
    "9007199254740993",
    "9223372036854775807",
    "-9223372036854775808",
    "1.0",
    "1e300 * 1e300",
    "-1e300 * 1e300",
    "0.1",
    "x'00ff'",
    "zeroblob(2)",
    "x''",
    "NULL",
    "'é'",
    "char(0)",
    "'a' || char(0) || 'b'",
    "1e16",
    "-5e-324",
    "12345678901234567890.0",
    "CAST(9223372036854775807 AS REAL)",
    "0.30000000000000004",
    "2e-7",
]:
    add("output", f"SELECT {expression} AS v, typeof({expression}) AS t")
add("output", "SELECT 1 AS a, 2 AS a")
add("output", "SELECT 1, 1")
add("output", 'SELECT 1 AS ""')
add("output", "SELECT * FROM t", setup=("CREATE TABLE t (id INTEGER PRIMARY KEY, v)",))
add(
    "output",
    "SELECT id, v FROM t ORDER BY id",
    setup=(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v)",
        "INSERT INTO t VALUES (9223372036854775807, 1.5), (1, x'01'), (2, NULL)",
    ),
)

# -- meta ----------------------------------------------------------------------------------------------------------
base = ("CREATE TABLE t (id INTEGER PRIMARY KEY, v)",)
trigger = base + (
    "CREATE TABLE log (x)",
    "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO log VALUES (new.v); INSERT INTO log VALUES (2); END",
)
cascade = (
    "CREATE TABLE p (id INTEGER PRIMARY KEY)",
    "CREATE TABLE c (id INTEGER PRIMARY KEY, p REFERENCES p (id) ON DELETE CASCADE)",
    "INSERT INTO p VALUES (1), (2)",
    "INSERT INTO c VALUES (1, 1), (2, 1), (3, 2)",
)
for sql, setup in [
    ("CREATE TABLE x (a)", ()),
    ("CREATE TABLE x (a)", base),
    ("CREATE INDEX i ON t (v)", base),
    ("DROP TABLE t", base),
    ("ALTER TABLE t ADD COLUMN w", base),
    ("ALTER TABLE t RENAME TO u", base),
    ("ALTER TABLE t RENAME COLUMN v TO w", base),
    ("ALTER TABLE t DROP COLUMN v", base),
    ("CREATE VIEW vw AS SELECT 1", base),
    ("DROP VIEW vw", base + ("CREATE VIEW vw AS SELECT 1",)),
    ("CREATE TRIGGER tr2 AFTER DELETE ON t BEGIN SELECT 1; END", base),
    ("INSERT INTO t (v) VALUES (1)", base),
    ("INSERT INTO t (v) VALUES (1), (2), (3)", base),
    ("INSERT INTO t VALUES (9007199254740993, 1)", base),
    ("INSERT INTO t VALUES (9223372036854775807, 1)", base),
    ("INSERT INTO t VALUES (-5, 1)", base),
    ("UPDATE t SET v = 9", base + ("INSERT INTO t (v) VALUES (1), (2)",)),
    ("UPDATE t SET v = 9 WHERE 0", base),
    ("DELETE FROM t", base + ("INSERT INTO t (v) VALUES (1), (2)",)),
    ("DELETE FROM t WHERE id = 99", base),
    ("SELECT 1", base + ("INSERT INTO t VALUES (5, 1)",)),
    ("SELECT * FROM t", base + ("INSERT INTO t VALUES (5, 1)",)),
    ("INSERT INTO t (v) VALUES (1)", trigger),
    ("SELECT count(*) FROM log", trigger + ("INSERT INTO t (v) VALUES (1)",)),
    ("DELETE FROM p WHERE id = 1", cascade),
    ("UPDATE p SET id = 3 WHERE id = 2", cascade),
    ("INSERT INTO f (a) VALUES ('hello world')", ("CREATE VIRTUAL TABLE f USING fts5(a)",)),
    ("DELETE FROM f", ("CREATE VIRTUAL TABLE f USING fts5(a)", "INSERT INTO f (a) VALUES ('x y')")),
    ("CREATE VIRTUAL TABLE f USING fts5(a)", ()),
    ("INSERT OR REPLACE INTO t VALUES (1, 2)", base + ("INSERT INTO t VALUES (1, 1)",)),
    ("INSERT INTO t VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET v = 5", base + ("INSERT INTO t VALUES (1, 1)",)),
    ("INSERT INTO t (v) SELECT value FROM json_each('[1,2,3,4]')", base),
    ("INSERT INTO t (v) VALUES (1) RETURNING id", base),
    ("DELETE FROM t RETURNING id", base + ("INSERT INTO t (v) VALUES (1), (2)",)),
    ("INSERT INTO t (v) VALUES (1); INSERT INTO t (v) VALUES (2)", base),
    ("INSERT INTO t (v) VALUES (1); SELECT 5 AS x", base),
    ("PRAGMA foreign_keys = OFF", ()),
    ("PRAGMA optimize", base),
    ("ANALYZE", base + ("CREATE INDEX i ON t (v)", "INSERT INTO t (v) VALUES (1)")),
    ("REINDEX", base),
    (
        "SELECT last_insert_rowid() AS l, changes() AS c, total_changes() > 0 AS t",
        base + ("INSERT INTO t (v) VALUES (1)",),
    ),
    ("INSERT INTO t (v) VALUES (zeroblob(100000))", base),
    ("DELETE FROM t", base + ("INSERT INTO t (v) VALUES (zeroblob(100000))",)),
    ("UPDATE t SET v = v WHERE id = 1", base + ("INSERT INTO t (v) VALUES (1)",)),
    ("INSERT INTO w DEFAULT VALUES", ("CREATE TABLE w (a) WITHOUT ROWID",)),
]:
    add("meta", sql, setup=setup)

# -- batches -------------------------------------------------------------------------------------------------------
batch("batch")
batch("batch", ("", ()))
batch("batch", ("  ", ()), ("SELECT 1 AS a", ()))
batch("batch", ("-- c", ()), ("SELECT 1 AS a", ()))
batch("batch", ("   -- indented", ()), ("SELECT 1 AS a", ()))
batch("batch", ("SELECT 1 AS a", ()), ("SELECT ? AS b", (2,)))
batch("batch", ("INSERT INTO t (v) VALUES (?)", (1,)), ("SELECT count(*) AS n FROM t", ()), setup=base)
batch("batch", ("INSERT INTO t (v) VALUES (1)", ()), ("INSERT INTO nope VALUES (1)", ()), setup=base)
batch("batch", ("INSERT INTO t (v) VALUES (1)", ()), ("SELECT ?", ()), setup=base)
batch(
    "batch",
    ("INSERT INTO t (v) VALUES (1); INSERT INTO t (v) VALUES (2)", ()),
    ("SELECT count(*) AS n FROM t", ()),
    setup=base,
)
batch("batch", ("SELECT 1; SELECT 2 AS b", ()), ("SELECT 3 AS c", ()))
batch("batch", ("BEGIN", ()), ("SELECT 1", ()))
batch("batch", ("CREATE TABLE x (a)", ()), ("INSERT INTO x VALUES (1)", ()), ("SELECT * FROM x", ()))
batch("batch", ("SELECT power(2, 2)", ()), ("SELECT 1", ()))
add(
    "batch",
    "SELECT count(*) AS n FROM t",
    setup=base + ("INSERT INTO t (v) VALUES (1); INSERT INTO nope VALUES (1)",),
    known=None,
)

# -- doubles as the sync engine pushes them: plain decimal text, and {"r": [m, e]} rebuilt as m * pow(2, e) ----------
# D1's SQLite reads decimal text of extreme magnitudes one bit off; the exact form must come back bit for bit.
_DOUBLES = (1e-300, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.989032661366619e244, 2.0**100, 7e-101)
for _double in _DOUBLES:
    _text, _special = encode_row([_double])
    add("doubles", f"SELECT {column_expr(0, True)} AS x FROM json_each(?) WHERE true", f"[{_text}]")
    add("doubles", "SELECT value AS x FROM json_each(?)", f"[{_double!r}]")
