"""Serving: model runtime, dynamic batcher, traffic router, Open Inference Protocol REST app.

    manager = ModelManager(loader, source, ServerConfig(), lookup=lookup, sink=sink)
    app = create_app(manager)            # run it with uvicorn; `mlcp serve` does

The hot path imports only torch, FastAPI (with pydantic and Starlette), prometheus-client and
the standard library. What it needs from outside (a model loader, a feature lookup, the
desired state, a place for report windows) is declared in `serving.spec` and handed over by
the control plane.
"""

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
