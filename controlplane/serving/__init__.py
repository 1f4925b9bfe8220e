"""The control plane's side of serving: the interfaces ``serving.spec`` declares, implemented
on the registry, the feature client and the database.

    loader = RegistryModelLoader(cp)                                  # ModelLoader
    lookup = feature_lookup(cp)                                       # FeatureLookup
    source = DbDesiredState(cp.sessions, database_url=cp.settings.database_url)
    sink = DbWindowSink(cp.sessions)                                  # WindowSink

Nothing here imports mlflow, feast or torch at import time, and names resolve on first use
(PEP 562): promotion's `notify_desired_state` doesn't pay for the loader or the lookup.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controlplane.serving.desired_state import CHANNEL, DbDesiredState, notify_desired_state
    from controlplane.serving.loader import RegistryModelLoader, model_spec
    from controlplane.serving.lookup import FeatureClientLookup, feature_lookup
    from controlplane.serving.windows import DbWindowSink, replicas, serving_windows

_WHERE = {
    "CHANNEL": "controlplane.serving.desired_state",
    "DbDesiredState": "controlplane.serving.desired_state",
    "DbWindowSink": "controlplane.serving.windows",
    "FeatureClientLookup": "controlplane.serving.lookup",
    "RegistryModelLoader": "controlplane.serving.loader",
    "feature_lookup": "controlplane.serving.lookup",
    "model_spec": "controlplane.serving.loader",
    "notify_desired_state": "controlplane.serving.desired_state",
    "replicas": "controlplane.serving.windows",
    "serving_windows": "controlplane.serving.windows",
}

__all__ = [
    "CHANNEL",
    "DbDesiredState",
    "DbWindowSink",
    "FeatureClientLookup",
    "RegistryModelLoader",
    "feature_lookup",
    "model_spec",
    "notify_desired_state",
    "replicas",
    "serving_windows",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'controlplane.serving' has no attribute {name!r}")
