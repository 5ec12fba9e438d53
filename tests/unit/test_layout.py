"""The house rules of docs/ARCHITECTURE.md, checked on the source: which room may import which, no import
circle, and every job's entry point a thin front end on the shared runner."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGES = ("ingest", "clickstream", "cdc", "als", "ab", "privacy", "features", "maintenance")
ENTRY_POINTS = sorted(p.stem for p in (REPO / "jobs").glob("*.py") if p.stem != "__init__")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    if parts[0] == "plugins":
        parts = parts[1:]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    files = [*REPO.glob("jobs/**/*.py"), *REPO.glob("demo/**/*.py"), *REPO.glob("plugins/**/*.py")]
    return {module_name(p): p for p in files}


def imports(path: Path, known: set[str]) -> set[str]:
    """Project modules imported anywhere in the file (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n for n in names if n in known}
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = sources()
    return {name: imports(path, set(modules)) for name, path in modules.items()}


def room(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "jobs" and len(parts) == 2 and parts[1] in ENTRY_POINTS:
        return "entry"
    return ".".join(parts[:2]) if parts[0] == "jobs" else parts[0]


def test_no_import_circle(graph):
    def visit(module: str, path: list[str]) -> None:
        if module in path:
            pytest.fail("import circle: " + " -> ".join(path[path.index(module):] + [module]))
        for target in graph[module]:
            if target != module and not module.startswith(f"{target}.") and target not in done:
                visit(target, [*path, module])
        done.add(module)

    done: set[str] = set()
    for module in graph:
        visit(module, [])


def test_each_room_imports_only_what_it_may(graph):
    allowed = {"jobs.common": {"jobs.common"}, "demo": {"demo", "jobs.common", "jobs.ingest", "jobs.cdc"},
               "pipeline_airflow": {"pipeline_airflow", "jobs.common", *(f"jobs.{s}" for s in STAGES)},
               **{f"jobs.{s}": {f"jobs.{s}", "jobs.common"} for s in STAGES},
               "entry": {"jobs.common", *(f"jobs.{s}" for s in STAGES)}}
    broken = []
    for module, targets in graph.items():
        if module == "jobs":
            continue
        for target in targets:
            if room(target) == "entry" or room(target) not in allowed[room(module)]:
                broken.append(f"{module} imports {target}")
    assert broken == []


def test_every_entry_point_is_a_thin_front_end_on_the_runner():
    for name in ENTRY_POINTS:
        tree = ast.parse((REPO / "jobs" / f"{name}.py").read_text())
        main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
        assert main.end_lineno - main.lineno < 25, f"jobs/{name}.py main() is {main.end_lineno - main.lineno} lines"
        assert "Job(" in ast.unparse(main), f"jobs/{name}.py main() does not use the job runner"
        assert ast.get_docstring(tree), f"jobs/{name}.py has no docstring for --help"
        assert len(tree.body) < 12, f"jobs/{name}.py holds more than a front end: move the logic to its stage"


def test_environment_is_read_only_in_config():
    readers = [str(p.relative_to(REPO)) for p in [*REPO.glob("jobs/**/*.py"), *REPO.glob("plugins/**/*.py"),
                                                  *REPO.glob("dags/*.py"), *REPO.glob("demo/*.py")]
               if "os.environ" in p.read_text() or "getenv(" in p.read_text()]
    assert readers == ["jobs/common/config.py"]
