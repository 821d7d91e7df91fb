"""Project-wide checks: doctests, the public API, the pure core's imports, ruff and mypy."""

from __future__ import annotations

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


@pytest.mark.parametrize("package", PACKAGES)
def test_mypy_is_clean(package: str) -> None:
    mypy = _tool("mypy")
    result = subprocess.run([mypy, package], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


if __name__ == "__main__":
    API_SNAPSHOT.write_text("\n".join(public_api()) + "\n")
