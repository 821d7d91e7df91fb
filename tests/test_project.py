"""Project-wide checks: doctests, the public API, the pure core's imports, ruff and mypy."""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import driftline

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["driftline", "schemas", "detectors", "streams", "retrainer"]
#: Every package of the namespace. The top-level folders install as subpackages of
#: ``driftline`` from their own directories, so walking ``driftline.__path__`` alone
#: (the ``driftline/`` folder) would never reach them.
NAMESPACE = ["driftline", *(f"driftline.{folder}" for folder in PACKAGES[1:])]
#: The public API: every module's ``__all__``, one ``module: name`` line each.
API_SNAPSHOT = Path(__file__).resolve().parent / "public_api.txt"


def all_modules() -> list[str]:
    names = set(NAMESPACE)
    for package in NAMESPACE:
        path = importlib.import_module(package).__path__
        names.update(info.name for info in pkgutil.walk_packages(path, f"{package}."))
    return sorted(n for n in names if not n.endswith(".__main__"))  # importing one runs it


def test_the_checks_reach_every_package_of_the_namespace() -> None:
    reached = {name.split(".")[1] for name in all_modules() if "." in name}
    assert {"schemas", "detectors", "streams", "retrainer", "store", "sdk"} <= reached
    assert driftline.__name__ == "driftline"


def public_api() -> list[str]:
    return [
        f"{name}: {public}"
        for name in all_modules()
        for public in sorted(getattr(importlib.import_module(name), "__all__", []))
    ]


def test_the_public_api_matches_its_snapshot() -> None:
    """A change to any ``__all__`` is a change of the public API: it shows in the diff of
    ``tests/public_api.txt`` (regenerate: ``python tests/test_project.py``)."""
    expected = API_SNAPSHOT.read_text().splitlines()
    actual = public_api()
    added = sorted(set(actual) - set(expected))
    removed = sorted(set(expected) - set(actual))
    assert not added and not removed, f"added: {added}\nremoved: {removed}"


@pytest.mark.parametrize("name", all_modules())
def test_doctests_pass(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"


@pytest.mark.parametrize("name", all_modules())
def test_every_public_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    if not name.split(".")[-1].startswith("_"):
        assert exported is not None, f"{name} has no __all__"
    for public in exported or []:
        assert hasattr(module, public), f"{name}.__all__ names {public!r}, which is missing"


def test_public_classes_have_a_doctest() -> None:
    """Every public class shows its use (exceptions and protocols excepted)."""
    missing = []
    for name in all_modules():
        module = importlib.import_module(name)
        for public in getattr(module, "__all__", []):
            item = getattr(module, public)
            defined_here = isinstance(item, type) and item.__module__ == name
            exempt = defined_here and (
                issubclass(item, BaseException) or getattr(item, "_is_protocol", False)
            )
            if defined_here and not exempt and ">>>" not in (item.__doc__ or ""):
                missing.append(f"{name}.{public}")
    assert not missing, f"public classes without a doctest: {missing}"


def test_the_pure_core_imports_no_kafka_clickhouse_faust_or_torch() -> None:
    core = [n for n in all_modules() if n.startswith(("driftline.detectors", "driftline.schemas"))]
    assert "driftline.detectors.evaluate" in core and "driftline.schemas.codec" in core
    code = (
        f"import sys, importlib\nfor name in {core!r}: importlib.import_module(name)\n"
        "banned = {'faust', 'confluent_kafka', 'clickhouse_connect', 'chdb', 'torch', 'aiokafka'}\n"
        "print(sorted(banned & {m.split('.')[0] for m in sys.modules}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def test_ruff_is_clean() -> None:
    ruff = _tool("ruff")
    check = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run([ruff, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.timeout(660)  # a clean clone has no mypy cache; the run's own limit is 600 s
@pytest.mark.parametrize("package", PACKAGES)
def test_mypy_is_clean(package: str) -> None:
    mypy = _tool("mypy")
    result = subprocess.run([mypy, package], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


if __name__ == "__main__":
    API_SNAPSHOT.write_text("\n".join(public_api()) + "\n")


# --------------------------------------------------------------------------- layout rules

#: Source folder of each package of the namespace.
SOURCES = {"driftline": "driftline", **{f"driftline.{p}": p for p in PACKAGES[1:]}}


def _module_files() -> dict[str, tuple[Path, bool]]:
    """Every module of the namespace: its file and whether it is a package."""
    found: dict[str, tuple[Path, bool]] = {}
    for prefix, folder in SOURCES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            package = parts[-1] == "__init__"
            name = ".".join([prefix, *(parts[:-1] if package else parts)])
            found[name] = (path, package)
    return found


def _imports(name: str, path: Path, package: bool) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every ``import``/``from`` anywhere in a module (function
    bodies too: a lazy import is still a dependency)."""
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = name.split(".") if package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            out.append((target, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((alias.name, []) for alias in node.names)
    return out


_SUBPACKAGES = {"schemas", "detectors", "streams", "retrainer", "store", "sdk", "cli"}


def _owner(module: str) -> str:
    """The package a module belongs to for the privacy rule: ``driftline.store``,
    ``driftline.detectors``, ... or ``driftline`` for its top-level modules."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and parts[1] in _SUBPACKAGES else parts[0]


def test_no_import_cycle_among_driftline_modules() -> None:
    modules = _module_files()
    graph: dict[str, set[str]] = {}
    for name, (path, package) in modules.items():
        deps = set()
        for target, names in _imports(name, path, package):
            for candidate in [target, *(f"{target}.{n}" for n in names)]:
                # a module importing its own package's __init__ is not a cycle edge
                own_package = modules.get(candidate, (None, False))[1] and name.startswith(
                    candidate + "."
                )
                if candidate in modules and candidate != name and not own_package:
                    deps.add(candidate)
        graph[name] = deps
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*trail[trail.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*trail, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_no_private_name_is_imported_across_packages() -> None:
    modules = _module_files()
    crossing = []
    for name, (path, package) in modules.items():
        for target, names in _imports(name, path, package):
            if not target.startswith("driftline") or _owner(target) == _owner(name):
                continue
            private = [n for n in names if n.startswith("_")]
            private += [p for p in target.split(".") if p.startswith("_")]
            if private:
                crossing.append(f"{name} imports {target}: {private}")
    assert not crossing, crossing


def test_streams_and_retrainer_do_not_import_the_backtest() -> None:
    modules = _module_files()
    users = [
        name
        for name, (path, package) in modules.items()
        if name.startswith(("driftline.streams", "driftline.retrainer"))
        and any(t.startswith("driftline.backtest") for t, _ in _imports(name, path, package))
    ]
    assert not users, users
