"""A loaded version on its device: eval mode, inference mode, optional half precision, warmed up.

    runtime = ModelRuntime(loaded, RuntimeConfig(device="auto", dtype="bfloat16"))
    runtime.warm_up((1, 2, 4, 8, 16, 32))      # before the version reports ready
    outputs = runtime.forward(torch.randn(8, 5))  # on the CPU, float32

``forward`` is called from one compute thread per version, never from the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable

import torch

from serving.config import RuntimeConfig, cpu_threads
from serving.errors import ModelLoadFailed
from serving.spec import LoadedModel

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Open Inference Protocol datatypes and their torch dtypes.
OIP_DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "UINT8": torch.uint8,
    "INT8": torch.int8,
    "INT16": torch.int16,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "FP16": torch.float16,
    "BF16": torch.bfloat16,
    "FP32": torch.float32,
    "FP64": torch.float64,
}
TORCH_TO_OIP = {dtype: name for name, dtype in OIP_DTYPES.items()}


def best_device(requested: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadFailed("the runtime", f"device {requested!r} asked for, but CUDA is absent")
    return device


def configure_cpu_threads(config: RuntimeConfig) -> int:
    """Set torch's intra-op threads for CPU inference; returns the number set.

    torch defaults to one thread per core, which on a small model makes every batch pay for
    waking and spinning threads that also compete with the event loop (measured on 2 cores:
    a 64-256-256-1 MLP at 32 rows took 3.4 ms with 2 threads, 0.29 ms with 1). ``auto``
    leaves half the cores to the event loop and feature reads.
    """
    threads = cpu_threads(config.cpu_threads)
    torch.set_num_threads(threads)
    return threads


def _to_eval(module: torch.nn.Module) -> None:
    # A torch.export program refuses .eval(): its graph already holds the mode it was
    # exported in (dropout and batch norm as traced), which registration checked.
    with contextlib.suppress(NotImplementedError):
        module.eval()


class ModelRuntime:
    """One version's module on its device, ready for batches.

    Inputs arrive on the CPU in the spec's dtype; they are moved and cast here, and outputs go
    back to the CPU as float32 (or the spec's integer type), so callers never see the device.
    """

    def __init__(self, loaded: LoadedModel, config: RuntimeConfig) -> None:
        self.spec = loaded.spec
        self.device = best_device(config.device)
        self.dtype = _DTYPES[config.dtype]
        module = loaded.module
        try:
            _to_eval(module)
            module = module.to(self.device)
            if self.dtype != torch.float32:
                module = module.to(self.dtype)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ModelLoadFailed(
                self.spec.ref, f"could not move it to {self.device}: {exc}"
            ) from exc
        self.module = module
        spec_input = self.spec.inputs[0] if self.spec.inputs else None
        self.input_dtype = (
            OIP_DTYPES.get(spec_input.datatype, torch.float32) if spec_input else (torch.float32)
        )
        self.width = (
            spec_input.shape[1]
            if spec_input is not None and len(spec_input.shape) == 2 and spec_input.shape[1] > 0
            else None
        )
        # torch.export specializes batch sizes 0 and 1: a program exported from a larger
        # example may refuse one row. Warm-up finds out; one row is then padded to two.
        self.pad_single_row = False
        self.warmed_up: dict[int, float] = {}

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        rows = batch.shape[0]
        x = batch
        if rows == 1 and self.pad_single_row:
            x = torch.cat([x, x])
        x = x.to(self.device, non_blocking=True)
        if x.is_floating_point() and x.dtype != self.dtype:
            x = x.to(self.dtype)
        with torch.inference_mode():
            out = self.module(x)
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"forward() returned {type(out).__name__}, expected one Tensor")
            if out.is_floating_point() and out.dtype != torch.float32:
                out = out.float()
            out = out.to("cpu")
        return out[:rows] if out.shape[0] != rows else out

    def warm_up(self, batch_sizes: Iterable[int]) -> dict[int, float]:
        """Run every batch size once (twice for the first), timing each; raises ModelLoadFailed."""
        if self.width is None:
            raise ModelLoadFailed(
                self.spec.ref,
                "its signature gives no (batch, features) input shape; register it with a 2-D "
                "input example",
            )
        sizes = sorted(set(batch_sizes) | {1})
        self._probe_single_row()
        for size in sizes:
            x = torch.zeros(size, self.width, dtype=self.input_dtype)
            try:
                self.forward(x)
                start = time.perf_counter()
                self.forward(x)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                self.warmed_up[size] = time.perf_counter() - start
            except (RuntimeError, AssertionError, TypeError, ValueError) as exc:
                raise ModelLoadFailed(
                    self.spec.ref, f"warm-up at batch size {size} failed: {_first_line(exc)}"
                ) from exc
        return dict(self.warmed_up)

    def _probe_single_row(self) -> None:
        x = torch.zeros(1, self.width or 1, dtype=self.input_dtype)
        try:
            self.forward(x)
        except (RuntimeError, AssertionError):
            self.pad_single_row = True
            log.info("%s refuses a batch of one row; single rows are padded to two", self.spec.ref)

    def estimate_s(self, rows: int) -> float:
        """Compute time of a batch of ``rows``, from the warm-up timings (0 before it)."""
        if not self.warmed_up:
            return 0.0
        fitting = [size for size in self.warmed_up if size >= rows]
        return self.warmed_up[min(fitting)] if fitting else self.warmed_up[max(self.warmed_up)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
