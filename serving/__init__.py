"""Serving: model runtime, dynamic batcher, traffic router, Open Inference Protocol REST app.

The hot path imports only torch, FastAPI and the standard library.
"""

from serving.errors import ServingError

__all__ = ["ServingError"]
