"""The explicit public API of driftline.detectors and its import rules."""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect
import pkgutil
from pathlib import Path

import driftline.detectors as detectors
import driftline.schemas.monitor as monitor
import pytest

MODULES = sorted(
    m.name for m in pkgutil.iter_modules(detectors.__path__) if not m.name.startswith("_")
)
FORBIDDEN = {
    "faust",
    "confluent_kafka",
    "clickhouse_connect",
    "chdb",
    "torch",
    "aiokafka",
    "pandas",
}
ALLOWED_ROOTS = {"numpy", "scipy", "river", "pydantic", "yaml", "driftline", "__future__"}


def _source_files() -> list[Path]:
    root = Path(detectors.__file__).parent
    return [*sorted(root.glob("*.py")), Path(monitor.__file__)]


@pytest.mark.parametrize("path", _source_files(), ids=lambda p: p.name)
def test_imports_only_allowed_packages(path: Path) -> None:
    import sys

    tree = ast.parse(path.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    assert not roots & FORBIDDEN
    unexpected = roots - ALLOWED_ROOTS - set(sys.stdlib_module_names)
    assert not unexpected, unexpected
    if path.name != "monitor.py":
        assert "yaml" not in roots


@pytest.mark.parametrize("name", MODULES)
def test_every_module_declares_all_and_exports_exist(name: str) -> None:
    mod = importlib.import_module(f"driftline.detectors.{name}")
    assert isinstance(mod.__all__, list)
    assert len(set(mod.__all__)) == len(mod.__all__)
    for symbol in mod.__all__:
        assert hasattr(mod, symbol), f"{name}.{symbol}"


def test_package_reexports_each_module_api() -> None:
    exported = list(detectors.__all__)
    assert len(set(exported)) == len(exported)
    union: set[str] = set()
    for name in MODULES:
        union |= set(importlib.import_module(f"driftline.detectors.{name}").__all__)
    assert set(exported) == union
    for symbol in exported:
        assert hasattr(detectors, symbol)
    assert "MonitorConfig" in monitor.__all__


@pytest.mark.parametrize("name", [*MODULES, "schemas.monitor"])
def test_public_classes_have_docstrings_with_examples(name: str) -> None:
    mod = (
        monitor
        if name == "schemas.monitor"
        else importlib.import_module(f"driftline.detectors.{name}")
    )
    finder = doctest.DocTestFinder()
    for symbol in mod.__all__:
        obj = getattr(mod, symbol)
        if inspect.isclass(obj) and obj.__module__ == mod.__name__:
            if issubclass(obj, Exception):
                continue
            assert obj.__doc__, f"{symbol} has no docstring"
            tests = [t for t in finder.find(obj, symbol, module=mod) if t.name == symbol]
            assert tests and tests[0].examples, f"{symbol} has no doctest"


@pytest.mark.parametrize("name", MODULES)
def test_doctests_pass_on_the_installed_package(name: str) -> None:
    mod = importlib.import_module(f"driftline.detectors.{name}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_monitor_doctests_pass() -> None:
    assert doctest.testmod(monitor).failed == 0
