"""Serving: model runtime, dynamic batcher, traffic router, Open Inference Protocol REST app.

    manager = ModelManager(loader, source, ServerConfig(), lookup=lookup, sink=sink)
    app = create_app(manager)            # run it with uvicorn; `mlcp serve` does

The hot path imports only torch, FastAPI (with pydantic and Starlette), prometheus-client and
the standard library. What it needs from outside (a model loader, a feature lookup, the
desired state, a place for report windows) is declared in `serving.spec` and handed over by
the control plane.

Names resolve on first use (PEP 562): `import serving.config` (what the control plane's
latency gate reads) pays for neither FastAPI nor the batcher.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serving.app import create_app
    from serving.batching import DynamicBatcher, collect_batch
    from serving.config import BatchingConfig, RuntimeConfig, ServerConfig
    from serving.errors import (
        DeadlineExceeded,
        FeaturesUnavailable,
        InvalidInput,
        ModelLoadFailed,
        ModelNotFound,
        ModelNotReady,
        Overloaded,
        PayloadTooLarge,
        ServingError,
        UnknownEntities,
    )
    from serving.manager import ModelManager
    from serving.runtime import ModelRuntime
    from serving.spec import (
        Deployment,
        DesiredStateSource,
        FeatureLookup,
        LoadedModel,
        ModelLoader,
        ModelSpec,
        TensorSpec,
        WindowSink,
    )
    from serving.windows import Sketch, Window, WindowRecorder

_WHERE = {
    "BatchingConfig": "serving.config",
    "DeadlineExceeded": "serving.errors",
    "Deployment": "serving.spec",
    "DesiredStateSource": "serving.spec",
    "DynamicBatcher": "serving.batching",
    "FeatureLookup": "serving.spec",
    "FeaturesUnavailable": "serving.errors",
    "InvalidInput": "serving.errors",
    "LoadedModel": "serving.spec",
    "ModelLoadFailed": "serving.errors",
    "ModelLoader": "serving.spec",
    "ModelManager": "serving.manager",
    "ModelNotFound": "serving.errors",
    "ModelNotReady": "serving.errors",
    "ModelRuntime": "serving.runtime",
    "ModelSpec": "serving.spec",
    "Overloaded": "serving.errors",
    "PayloadTooLarge": "serving.errors",
    "RuntimeConfig": "serving.config",
    "ServerConfig": "serving.config",
    "ServingError": "serving.errors",
    "Sketch": "serving.windows",
    "TensorSpec": "serving.spec",
    "UnknownEntities": "serving.errors",
    "Window": "serving.windows",
    "WindowRecorder": "serving.windows",
    "WindowSink": "serving.spec",
    "collect_batch": "serving.batching",
    "create_app": "serving.app",
}

__all__ = [
    "BatchingConfig",
    "DeadlineExceeded",
    "Deployment",
    "DesiredStateSource",
    "DynamicBatcher",
    "FeatureLookup",
    "FeaturesUnavailable",
    "InvalidInput",
    "LoadedModel",
    "ModelLoadFailed",
    "ModelLoader",
    "ModelManager",
    "ModelNotFound",
    "ModelNotReady",
    "ModelRuntime",
    "ModelSpec",
    "Overloaded",
    "PayloadTooLarge",
    "RuntimeConfig",
    "ServerConfig",
    "ServingError",
    "Sketch",
    "TensorSpec",
    "UnknownEntities",
    "Window",
    "WindowRecorder",
    "WindowSink",
    "collect_batch",
    "create_app",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'serving' has no attribute {name!r}")
