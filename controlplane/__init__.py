"""The control plane: settings, database, audit log, and the wiring of registry, features
and serving. The ``mlcp`` CLI lives in ``controlplane.cli``.

    from controlplane import ControlPlane
    with ControlPlane.open() as cp:
        print([v.ref for v in cp.registry.versions()])

Names resolve on first use (PEP 562): ``mlcp --help`` imports this package and must not pay
for SQLAlchemy, numpy or the registry.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controlplane.context import ControlPlane
    from controlplane.errors import (
        ControlPlaneError,
        DatabaseUnavailable,
        SchemaOutOfDate,
        SettingsError,
    )
    from controlplane.settings import Settings, load_settings

_WHERE = {
    "ControlPlane": "controlplane.context",
    "ControlPlaneError": "controlplane.errors",
    "DatabaseUnavailable": "controlplane.errors",
    "SchemaOutOfDate": "controlplane.errors",
    "Settings": "controlplane.settings",
    "SettingsError": "controlplane.errors",
    "load_settings": "controlplane.settings",
}

__all__ = [
    "ControlPlane",
    "ControlPlaneError",
    "DatabaseUnavailable",
    "SchemaOutOfDate",
    "Settings",
    "SettingsError",
    "load_settings",
]

# A features.py beside the user's script would be imported instead of mlcp's `features`
# package, failing far from the cause: name the file now (cheap: a few path lookups).
_shadowing = importlib.import_module("controlplane.shadowing")
_shadowing.warn_if_shadowed()


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'controlplane' has no attribute {name!r}")
