"""The packages' public surfaces are honest and their dependencies point one way."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGES = ["controlplane", "registry", "features", "serving"]
LEAVES = ["registry", "features", "serving"]


def isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted_and_resolves(package: str) -> None:
    module = importlib.import_module(package)
    names = list(module.__all__)
    assert names == sorted(names, key=isort_key)
    for name in names:
        assert getattr(module, name) is not None


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", LEAVES)
def test_leaf_packages_import_neither_the_control_plane_nor_each_other(package: str) -> None:
    root = Path(importlib.import_module(package).__file__ or "").parent
    forbidden = {"controlplane", *LEAVES} - {package}
    for path in root.rglob("*.py"):
        assert not imported_packages(path) & forbidden, path


def test_each_package_has_one_error_root() -> None:
    from controlplane import ControlPlaneError
    from features import FeatureStoreError
    from registry import RegistryError
    from serving import ServingError

    for root in (ControlPlaneError, FeatureStoreError, RegistryError, ServingError):
        assert root.__bases__ == (Exception,)
