"""The latency gate: forward-pass p50/p99 per batch size against a budget.

The gate only reads timings from ``ctx.latency_probe``; ``make_forward_probe`` builds
one that times a loaded torch model, so the same gate judges a fake probe in tests.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np
import torch

from registry.gates.base import GateContext, GateResult, LatencyProbe


class LatencyBudgetGate:
    """Fails when any batch size's p99 (or p50) forward time exceeds the budget.

    LatencyBudgetGate([1, 32], p99_ms=50, p50_ms=20, iterations=100)
    """

    name = "latency"

    def __init__(
        self,
        batch_sizes: list[int],
        p99_ms: float,
        p50_ms: float | None = None,
        iterations: int = 50,
    ) -> None:
        if not batch_sizes or any(b < 1 for b in batch_sizes):
            raise ValueError(f"latency gate: batch sizes must be >= 1, got {batch_sizes}")
        if p99_ms <= 0 or (p50_ms is not None and p50_ms <= 0):
            raise ValueError("latency gate: p99_ms and p50_ms must be > 0")
        if iterations < 1:
            raise ValueError(f"latency gate: iterations must be >= 1, got {iterations}")
        self.batch_sizes = list(batch_sizes)
        self.p99_ms = p99_ms
        self.p50_ms = p50_ms
        self.iterations = iterations

    @property
    def threshold(self) -> str:
        p50 = f", p50 <= {self.p50_ms} ms" if self.p50_ms is not None else ""
        return f"p99 <= {self.p99_ms} ms{p50}"

    def check(self, ctx: GateContext) -> GateResult:
        if ctx.latency_probe is None:
            return GateResult.cannot_judge(
                self.name,
                self.threshold,
                "no latency probe: the model could not be loaded for timing",
                device=ctx.device,
            )
        per_batch: list[dict[str, Any]] = []
        reasons: list[str] = []
        for batch_size in self.batch_sizes:
            times = ctx.latency_probe(batch_size, self.iterations)
            if not times:
                raise ValueError(f"the latency probe returned no timings for batch {batch_size}")
            p50, p99 = (float(v) for v in np.percentile(np.asarray(times) * 1000.0, [50, 99]))
            per_batch.append(
                {
                    "batch_size": batch_size,
                    "p50_ms": round(p50, 3),
                    "p99_ms": round(p99, 3),
                    "iterations": len(times),
                }
            )
            if p99 > self.p99_ms:
                reasons.append(f"batch {batch_size}: p99 {p99:.3f} ms > {self.p99_ms} ms")
            if self.p50_ms is not None and p50 > self.p50_ms:
                reasons.append(f"batch {batch_size}: p50 {p50:.3f} ms > {self.p50_ms} ms")
        details: dict[str, Any] = {"batch_sizes": per_batch, "device": ctx.device}
        if reasons:
            details["reason"] = "; ".join(reasons)
        return GateResult(
            gate=self.name,
            passed=not reasons,
            observed=max(b["p99_ms"] for b in per_batch),
            threshold=self.threshold,
            details=details,
        )


def make_forward_probe(
    model: torch.nn.Module,
    feature_shape: tuple[int, ...],
    dtype: str = "float32",
    device: str = "cpu",
    warmup: int = 5,
) -> LatencyProbe:
    """A probe timing ``model`` on random inputs of shape ``(batch_size, *feature_shape)``.

        probe = make_forward_probe(net, (4,), device="cuda")
        seconds = probe(32, 100)  # one wall time per forward, warm-up excluded

    The model is moved to ``device`` and put in eval mode (in place, as ``Module.to`` does).
    """
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"unknown torch dtype {dtype!r}; use a name like 'float32' or 'int64'")
    model = model.to(device)
    # A pt2 model loaded from MLflow is an exported graph: already in inference form, and
    # torch refuses train()/eval() on it.
    with contextlib.suppress(NotImplementedError):
        model.eval()
    # CUDA launches are asynchronous: without a sync the clock would stop at the launch.
    sync = torch.cuda.synchronize if device.startswith("cuda") else _no_sync

    @torch.inference_mode()
    def probe(batch_size: int, iterations: int) -> list[float]:
        shape = (batch_size, *feature_shape)
        if torch_dtype.is_floating_point:
            x = torch.randn(shape, dtype=torch_dtype, device=device)
        else:
            x = torch.zeros(shape, dtype=torch_dtype, device=device)
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(iterations):
            sync()
            start = time.perf_counter()
            model(x)
            sync()
            times.append(time.perf_counter() - start)
        return times

    return probe


def _no_sync() -> None:
    pass
