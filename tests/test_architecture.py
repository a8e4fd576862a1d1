"""The shape of the tree: imports run one way with no cycles, modules and functions stay small, only
the errors package reads error messages, and the command line loads no server or benchmark code it does not need."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "d1sync"

# Lower layers never import higher ones (DESIGN.md, "Target layout").
LAYERS: list[tuple[str, ...]] = [
    ("d1sync._version", "d1sync.errors", "d1sync.values", "d1sync.sql", "d1sync.backoff"),
    ("d1sync.database", "d1sync.wrangler"),
    ("d1sync.sqlite", "d1sync.local", "d1sync.client", "d1sync.target"),
    ("d1sync.sync", "d1sync.outbox", "d1sync.migrations", "d1sync.tasks", "d1sync.modules", "d1sync.restore"),
    ("d1sync.fleet",),
    ("d1sync.emulator",),
    ("d1sync.demo", "d1sync.bench"),
    ("d1sync.cli", "d1sync.__main__"),
]
MAX_MODULE_LINES = 470
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, except those under ``if TYPE_CHECKING:`` (imports for annotations never run)."""
    found: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def imports_of(name: str) -> set[str]:
    """The d1sync modules ``name`` imports when it runs (module level and inside functions)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for target in targets:
            # A module's own ancestor packages are already running when it runs: not an edge.
            if target in MODULES and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def layer_of(name: str) -> int:
    for index, layer in enumerate(LAYERS):
        if any(name == prefix or name.startswith(prefix + ".") for prefix in layer):
            return index
    raise AssertionError(f"{name} is in no layer of LAYERS: place it")


def test_every_module_is_in_a_layer() -> None:
    for name in MODULES:
        if name != "d1sync":  # the front door loads names lazily, by string
            layer_of(name)


def test_imports_only_go_down_the_layers() -> None:
    upward = [
        f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
        for name in MODULES
        if name != "d1sync"
        for target in imports_of(name)
        if target != "d1sync" and layer_of(target) > layer_of(name)
    ]
    assert upward == []


def test_the_import_graph_has_no_cycles() -> None:
    graph = {name: imports_of(name) for name in MODULES}
    # A package's __init__ runs before any of its modules: importing d1sync.x.y also imports d1sync.x.
    for name in MODULES:
        for target in list(graph[name]):
            parent = target.rpartition(".")[0]
            while parent and parent != name and not name.startswith(parent + "."):
                if parent in MODULES:
                    graph[name].add(parent)
                parent = parent.rpartition(".")[0]
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_modules_and_functions_stay_small() -> None:
    too_long: list[str] = []
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert too_long == []


def _message_matches(tree: ast.AST) -> list[int]:
    """Lines that test error text: ``"x" in exc.message``, ``"x" in str(exc)``, ``exc.message.startswith(...)``."""
    lines: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops):
            for right in node.comparators:
                is_message = isinstance(right, ast.Attribute) and right.attr == "message"
                is_str_of_exc = (
                    isinstance(right, ast.Call)
                    and isinstance(right.func, ast.Name)
                    and right.func.id == "str"
                    and right.args
                    and isinstance(right.args[0], ast.Name)
                    and right.args[0].id in ("exc", "error", "err", "e")
                )
                if is_message or is_str_of_exc:
                    lines.append(node.lineno)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("startswith", "endswith", "find", "search", "match")
        ):
            owner = node.func.value
            if isinstance(owner, ast.Attribute) and owner.attr == "message":
                lines.append(node.lineno)
    return lines


def test_only_errors_py_reads_error_messages() -> None:
    found = {
        name: _message_matches(ast.parse(path.read_text(encoding="utf-8")))
        for name, path in MODULES.items()
        if name.partition("._")[0] != "d1sync.errors"  # the package and its private modules
    }
    assert {name: lines for name, lines in found.items() if lines} == {}


HEAVY = ("uvicorn", "starlette", "d1sync.bench", "d1sync.emulator.app", "d1sync.emulator.server")


def _imported_modules(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "d1sync", *args], capture_output=True, text=True, timeout=60
    )
    return {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [["--help"], ["status", "--help"], ["sync", "--help"]], ids=" ".join)
def test_the_command_line_loads_no_server_or_benchmark_code_it_does_not_use(args: list[str]) -> None:
    loaded = _imported_modules(*args)
    assert "d1sync.cli" in loaded  # the measurement itself works
    assert sorted(m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(HEAVY)) == []


def test_help_loads_no_command_module_at_all() -> None:
    loaded = _imported_modules("--help")
    assert sorted(m for m in loaded if m.startswith("d1sync.cli.")) == []
    assert "httpx" not in loaded


ENGINE = "d1sync.sync"
STORE = "d1sync.sync.store"
# Outside the store, only these name d1sync's own tables in SQL: what d1sync keeps on D1 (remote capture,
# replica positions), a clone's plan kept in the new file, and the migrations' checksum side table.
OWN_TABLES_ELSEWHERE = {
    "d1sync.sync.remote",
    "d1sync.sync.compare.clone_plan",
    "d1sync.migrations.runner",
    "d1sync.fleet.provision",  # its own table: a tenant's database binding
    "d1sync.fleet.tenants",  # names the prefix only to leave d1sync's tables untracked
}


def _docstrings(tree: ast.AST) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
        # An attribute docstring: a bare string right after an assignment.
        if hasattr(node, "body") and isinstance(node.body, list):
            for before, after in zip(node.body, node.body[1:], strict=False):
                if isinstance(before, ast.Assign | ast.AnnAssign) and isinstance(after, ast.Expr):
                    if isinstance(after.value, ast.Constant):
                        found.add(id(after.value))
    return found


def _names_own_tables(path: Path) -> bool:
    """Whether a module's code (docstrings aside) holds text naming a ``_d1sync_`` table."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _docstrings(tree)
    return any(
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and "_d1sync_" in node.value
        and id(node) not in skip
        for node in ast.walk(tree)
    )


def test_only_the_store_runs_sql_on_the_outbox_tables() -> None:
    """The store owns the outbox's local state: nothing else writes SQL naming a ``_d1sync_`` table."""
    naming = {
        name
        for name, path in MODULES.items()
        if not (name == STORE or name.startswith((STORE + ".", "d1sync.bench"))) and _names_own_tables(path)
    }
    assert naming <= OWN_TABLES_ELSEWHERE, sorted(naming - OWN_TABLES_ELSEWHERE)


STORE_SQL = {"PENDING", "LIVE", "APPLYING_TABLE", "SCHEMA", "CHANGE_LOG"}
"""The store's SQL fragments: code outside the store that imports one is writing SQL on its tables."""


def test_no_sql_fragment_of_the_store_is_used_outside_it() -> None:
    used = {
        f"{name}: {alias.name}"
        for name, path in MODULES.items()
        if not name.startswith((STORE, "d1sync.bench"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(STORE)
        for alias in node.names
        if alias.name in STORE_SQL
    }
    assert used == set()


def test_the_store_imports_nothing_of_the_engine_above_it() -> None:
    below = {"d1sync.sync.codec", "d1sync.sync.model"}
    upward = {
        f"{name} imports {target}"
        for name in MODULES
        if name.startswith(STORE)
        for target in imports_of(name)
        if target.startswith(ENGINE + ".") and not target.startswith(STORE) and target not in below
    }
    assert upward == set()


def test_no_protocol_describes_the_worker_and_no_mixin_expects_its_attributes() -> None:
    """Parts get what they need as arguments: no Protocol classes in the engine, and SyncWorker composes
    its parts instead of inheriting them."""
    protocols = [
        f"{name}.{node.name}"
        for name, path in MODULES.items()
        if name.startswith(ENGINE)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
        and any(isinstance(base, ast.Name | ast.Attribute) and "Protocol" in ast.unparse(base) for base in node.bases)
    ]
    assert protocols == []
    from d1sync.sync.engine import SyncWorker

    assert SyncWorker.__bases__ == (object,)


def test_only_refusals_decides_what_a_push_refusal_means() -> None:
    """What a D1 refusal means (retry, bisect, dead-letter, pause a table, pause all) is one table of rules in
    refusals.py; the rest of the engine carries verdicts out. (apply.py reads local SQLite errors of pulled
    rows, which are not D1's refusals.)"""
    readers = sorted(
        f"{name}:{node.lineno}"
        for name, path in MODULES.items()
        if name.startswith(ENGINE) and name not in (f"{ENGINE}.push.refusals", f"{ENGINE}.pull.apply")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr in ("row_level", "constraint")
    )
    assert readers == []


def _engine_graph() -> dict[str, set[str]]:
    """The engine's modules and what each imports of the engine (a package's __init__ included)."""
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        if name == ENGINE or name.startswith(ENGINE + "."):
            targets = {t for t in imports_of(name) if t.startswith(ENGINE + ".")}
            for target in list(targets):
                parent = target.rpartition(".")[0]
                while parent.startswith(ENGINE + ".") and not name.startswith(parent + "."):
                    targets.add(parent)
                    parent = parent.rpartition(".")[0]
            graph[name] = targets
    return graph


def test_no_folder_of_the_engine_holds_more_than_twelve_modules() -> None:
    folders: dict[Path, int] = {}
    for path in (SRC / "sync").rglob("*.py"):
        folders[path.parent] = folders.get(path.parent, 0) + 1
    assert {str(f.relative_to(SRC)): n for f, n in folders.items() if n > 12} == {}


def test_the_engines_import_chain_is_at_most_eight_deep() -> None:
    graph = _engine_graph()
    depth: dict[str, int] = {}

    def deepest(name: str) -> int:
        if name not in depth:
            depth[name] = 1 + max((deepest(t) for t in graph.get(name, ())), default=0)
        return depth[name]

    worst = max(graph, key=deepest)
    assert deepest(worst) <= 8, (worst, deepest(worst))


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for target in graph.get(stack.pop(), ()):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


@pytest.mark.parametrize("start", [f"{ENGINE}.push", f"{ENGINE}.store.triggers", f"{ENGINE}.capture"])
def test_push_and_capture_import_nothing_named_pull_or_replica(start: str) -> None:
    """Pull sits beside push, never below it: capture learns "this write is an apply" from the store."""
    graph = _engine_graph()
    starts = [name for name in graph if name == start or name.startswith(start + ".")]
    assert starts
    reached = {target for name in starts for target in _reaches(graph, name) | {name}}
    named = sorted(t for t in reached if any(part in t.rpartition(".")[2] for part in ("pull", "replica")))
    named += sorted(t for t in reached if ".pull." in t + ".")
    assert named == []
