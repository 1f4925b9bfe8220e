"""The control plane's side of serving: the interfaces ``serving.spec`` declares, implemented
on the registry, the feature client and the database.

    loader = RegistryModelLoader(cp)                                  # ModelLoader
    lookup = feature_lookup(cp)                                       # FeatureLookup
    source = DbDesiredState(cp.sessions, database_url=cp.settings.database_url)
    sink = DbWindowSink(cp.sessions)                                  # WindowSink

Nothing here imports mlflow, feast or torch at import time.
"""

from controlplane.serving.desired_state import CHANNEL, DbDesiredState, notify_desired_state
from controlplane.serving.loader import RegistryModelLoader, model_spec
from controlplane.serving.lookup import FeatureClientLookup, feature_lookup
from controlplane.serving.windows import DbWindowSink, replicas, serving_windows

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
