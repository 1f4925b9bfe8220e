"""GPU serving benchmark, for a bare GPU machine: served rows/s as a share of the raw forward
rows/s, for a model that keeps the GPU busy, with multi-row requests in half precision.

    benchmarks/serving_gpu.sh                       # the prepared run (see benchmarks/README.md)
    python benchmarks/serving_gpu.py [--device cpu] [--quick] [--out PATH]

Nothing here needs the control plane: the model is built here, exported with torch.export and
saved to a file, and `benchmarks/exported_server.py` serves that file through mlcp's serving
tier (the app, manager, dynamic batcher and runtime `mlcp serve` uses), so the machine needs
torch and the few wheels in benchmarks/gpu-wheels.txt, not MLflow, Feast or a database.

In one run:
1. the model: ``features -> width``, then one ``width x width`` layer applied ``depth`` times
   (tanh, weights at the edge of chaos so values neither vanish nor explode), then ``-> 1``.
   One shared layer keeps the archive small while the compute per row is large; ``depth`` is
   calibrated on the device so the raw forward at the server's batch size runs near
   ``--target-raw-rows`` rows/s: a model heavy enough for the GPU, not for JSON, to be the
   limit (a 50 MFLOP model would make any HTTP server look slow);
2. the archive is saved, loaded back, and its raw forward timed at several batch sizes in the
   serving dtype (``torch.inference_mode``, launches pipelined, the best of 5 slices): the
   ceiling;
3. the server starts on loopback; one request must match the in-process answer (within the
   dtype's tolerance) and the server must not have imported mlflow, feast, GX, SQLAlchemy or
   the control plane;
4. benchmarks/loadgen.py sends ``--rows``-row requests at each concurrency; served rows/s =
   requests/s x rows. The target: the best level serves at least 80% of the ceiling.
Results: ``benchmarks/results/serving-<device>.json`` on CUDA (``serving-h200.json``); on a
CPU (a check of the same code path, not a GPU figure) ``serving-cpu-exported.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from serving_bench import (
    _loadavg,
    _rows_per_s,
    device_facts,
    drive,
    free_port,
    post_json,
    running,
)

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "benchmarks" / "exported_server.py"
NAME = "gpu_bench"
SEED = 0
TARGET_FRACTION = 0.8
# Per device kind: model widths, the raw rate to calibrate to, and how the server is loaded.
DEFAULTS: dict[str, dict[str, Any]] = {
    "cuda": {"features": 64, "width": 8192, "target_raw_rows": 60_000, "dtype": "bfloat16",
             "rows": 64, "max_batch_size": 256, "concurrency": "16,64", "duration": 15.0},
    "cpu": {"features": 64, "width": 256, "target_raw_rows": 3_000, "dtype": "float32",
            "rows": 16, "max_batch_size": 64, "concurrency": "4,16", "duration": 10.0},
}  # fmt: skip
TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2, "float16": 1e-2}  # max |diff|, relative to 1
MAX_DEPTH = 4096


def deep_mlp(features: int, width: int, depth: int) -> Any:
    """``features -> width``, one ``width x width`` tanh layer ``depth`` times, ``-> 1``."""
    import torch

    class DeepMLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = torch.nn.Linear(features, width)
            self.block = torch.nn.Linear(width, width)
            self.out = torch.nn.Linear(width, 1)
            self.depth = depth
            with torch.no_grad():  # variance 1/width: tanh's edge of chaos, stable with depth
                self.block.weight.normal_(0.0, width**-0.5)
                self.block.bias.zero_()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(self.inp(x))
            for _ in range(self.depth):
                h = torch.tanh(self.block(h))
            return self.out(h)

    torch.manual_seed(SEED)
    return DeepMLP().eval()


def rows_per_s(module: Any, batch: int, features: int, device: str, dtype: Any, s: float) -> float:
    import torch

    x = torch.randn(batch, features, device=device, dtype=dtype)
    with torch.inference_mode():
        return max(_rows_per_s(module, x, s / 5, device.startswith("cuda")) for _ in range(5))


def calibrate(cfg: dict[str, Any], device: str, dtype: Any, seconds: float) -> dict[str, Any]:
    """The depth that puts the raw forward at the server's batch size near the target rate:
    time per batch = fixed + depth x per-layer, from two depths."""
    batch, f, w = cfg["max_batch_size"], cfg["features"], cfg["width"]
    times = {}
    for depth in (2, 10):
        net = deep_mlp(f, w, depth).to(device=device, dtype=dtype)
        times[depth] = batch / rows_per_s(net, batch, f, device, dtype, seconds)
    per_layer = max((times[10] - times[2]) / 8, 1e-9)
    fixed = max(times[2] - 2 * per_layer, 0.0)
    want = batch / cfg["target_raw_rows"]
    depth = int(min(MAX_DEPTH, max(1, round((want - fixed) / per_layer))))
    return {
        "depth": depth,
        "batch_s_at_depth": {str(k): round(v, 6) for k, v in times.items()},
        "per_layer_s": round(per_layer, 7),
    }


def export(module: Any, features: int, path: Path) -> float:
    """Save ``module`` as a torch.export archive (batch dimension dynamic); returns seconds."""
    import torch

    t0 = time.perf_counter()
    x = torch.randn(4, features)
    program = torch.export.export(module, (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    torch.export.save(program, str(path))
    return time.perf_counter() - t0


def request_body(rows: list[list[float]]) -> bytes:
    flat = [v for row in rows for v in row]
    inputs = [{"name": "input", "shape": [len(rows), len(rows[0])], "datatype": "FP32",
               "data": flat}]  # fmt: skip
    return json.dumps({"inputs": inputs}).encode()


def check_answer(url: str, rows: list[list[float]], expected: list[float], tol: float) -> dict:
    status, answer = post_json(url, request_body(rows))
    if status != 200:
        return {"passed": False, "status": status, "answer": answer}
    got = [float(v) for v in answer["outputs"][0]["data"]]
    scale = max(1.0, max(abs(v) for v in expected))
    diff = max(abs(a - b) for a, b in zip(got, expected, strict=True)) / scale
    return {"passed": diff <= tol, "max_relative_diff": diff, "tolerance": tol,
            "first": got[:3], "expected_first": expected[:3]}  # fmt: skip


def bench(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    facts = device_facts()
    kind = "cuda" if args.device.startswith("cuda") or (
        args.device == "auto" and facts["device"] == "cuda") else "cpu"  # fmt: skip
    device = "cuda" if kind == "cuda" else "cpu"
    cfg = dict(DEFAULTS[kind])
    for key in ("dtype", "rows", "concurrency", "target_raw_rows", "duration", "width"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.quick:
        cfg["duration"] = 3.0
    dtype = getattr(torch, cfg["dtype"])
    probe_s = 1.0 if args.quick else 2.0
    threads = None
    if kind == "cpu":  # as `mlcp serve` runs there: half the cores to torch
        threads = max(1, (os.cpu_count() or 2) // 2)
        torch.set_num_threads(threads)

    result: dict[str, Any] = {
        "benchmark": "serving-gpu",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": facts["slug"] if kind == "cuda" else "cpu",
        "device_name": facts["name"],
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "cuda": torch.version.cuda if kind == "cuda" else None,
            "loadavg_at_start": _loadavg(),
        },
        "settings": cfg | {"torch_threads": threads, "quick": args.quick},
    }
    if kind == "cpu":
        result["note"] = (
            "no GPU here: this is the GPU script's code path run on the CPU, to show it works; "
            "the fraction is not a GPU figure"
        )
    cal = calibrate(cfg, device, dtype, probe_s)
    depth = cal["depth"]
    model = deep_mlp(cfg["features"], cfg["width"], depth)
    flops = 2 * (cfg["features"] * cfg["width"] + depth * cfg["width"] ** 2 + cfg["width"])
    result["model"] = {
        "architecture": f"{cfg['features']} -> {cfg['width']}, a shared {cfg['width']}x"
        f"{cfg['width']} tanh layer x {depth}, -> 1 (seed {SEED})",
        "depth": depth,
        "parameters": sum(p.numel() for p in model.parameters()),
        "gflop_per_row": round(flops / 1e9, 3),
        "calibration": cal,
    }
    with tempfile.TemporaryDirectory(prefix="mlcp-gpu-bench-") as tmp:
        work = Path(tmp)
        archive = work / "model.pt2"
        result["model"]["export_s"] = round(export(model, cfg["features"], archive), 2)
        result["model"]["archive_mb"] = round(archive.stat().st_size / 1e6, 1)

        from registry.pt2 import check_pt2

        check_pt2(archive)  # its own export, checked as every archive is before torch loads it
        loaded = torch.export.load(str(archive)).module().to(device=device, dtype=dtype)
        ceiling = {
            str(b): round(rows_per_s(loaded, b, cfg["features"], device, dtype, probe_s), 1)
            for b in sorted({16, 32, 64, 128, 256, cfg["max_batch_size"]})
            if b <= cfg["max_batch_size"]  # the largest batch the server forms
        }
        best_batch = max(ceiling, key=lambda b: ceiling[b])
        result["raw_forward"] = {
            "rows_per_s": ceiling,
            "best_rows_per_s": ceiling[best_batch],
            "best_batch": int(best_batch),
            "mode": "the saved archive loaded back, torch.inference_mode, launches pipelined, "
            "best of 5 slices per batch size, up to the server's max batch size",
        }

        gen = torch.Generator().manual_seed(SEED + 1)
        rows = torch.randn(cfg["rows"], cfg["features"], generator=gen)
        rows = [[round(float(v), 4) for v in row] for row in rows]
        with torch.inference_mode():
            expected = loaded(torch.tensor(rows, device=device, dtype=dtype)).float().cpu()
        body = work / "request.json"
        body.write_bytes(request_body(rows))

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        argv = [sys.executable, str(SERVER), "--model", str(archive), "--name", NAME,
                "--features", str(cfg["features"]), "--port", str(port), "--device", device,
                "--dtype", cfg["dtype"], "--max-batch-size",
                str(cfg["max_batch_size"])]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with running("mlcp", argv, env, f"{base}/v2/models/{NAME}/infer",
                     f"{base}/v2/health/ready", work) as server:  # fmt: skip
            result["server"] = {
                "argv": argv[1:],
                "startup_s": server.startup_s,
                "control_plane_imports": announced(server),
            }
            check = check_answer(server.infer_url, rows, expected.flatten().tolist(),
                                 TOLERANCE[cfg["dtype"]])  # fmt: skip
            result["prediction_check"] = check
            runs: dict[str, Any] = {}
            if check["passed"]:
                for level in (int(c) for c in str(cfg["concurrency"]).split(",")):
                    print(f"concurrency {level} ...", file=sys.stderr, flush=True)
                    run = drive(server, body, level, cfg["duration"], 1.0 if args.quick else 3.0)
                    run["rows_per_s"] = round(run["throughput_rps"] * cfg["rows"], 1)
                    runs[f"c{level}"] = run
            result["runs"] = runs

    result["targets"] = verdict(result, runs)
    result["machine"]["loadavg_at_end"] = _loadavg()
    return result


def announced(server: Any, timeout_s: float = 10.0) -> list[str] | None:
    """What the server said it imported of the control plane's packages, once ready."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in server.log_tail(1_000_000).splitlines():
            if line.startswith('{"ready"'):
                return list(json.loads(line)["control_plane_imports"])
        time.sleep(0.1)
    return None


def verdict(result: dict[str, Any], runs: dict[str, Any]) -> dict[str, Any]:
    ceiling = result["raw_forward"]["best_rows_per_s"]
    bare = result["server"].get("control_plane_imports") == []
    if not runs:
        return {"fraction_of_ceiling": {"met": None, "why": "no runs (the answer check failed)"}}
    level, best = max(runs.items(), key=lambda kv: kv[1]["rows_per_s"])
    fraction = round(best["rows_per_s"] / ceiling, 3) if ceiling else None
    return {
        "fraction_of_ceiling": {
            "target": f">= {TARGET_FRACTION}",
            "observed": fraction,
            "at": level,
            "served_rows_per_s": best["rows_per_s"],
            "ceiling_rows_per_s": ceiling,
            "met": fraction is not None and fraction >= TARGET_FRACTION,
        },
        "served_without_the_control_plane": {"met": bare},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cpu")
    parser.add_argument("--dtype", choices=sorted(TOLERANCE), help="default bfloat16 on CUDA")
    parser.add_argument("--rows", type=int, help="rows per request")
    parser.add_argument("--concurrency", help="comma-separated levels")
    parser.add_argument("--target-raw-rows", type=int, help="raw rows/s the depth is set for")
    parser.add_argument("--width", type=int, help="hidden width")
    parser.add_argument("--duration", type=float, help="measured seconds per level")
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke check")
    parser.add_argument("--out", type=Path, help="default benchmarks/results/serving-<dev>.json")
    args = parser.parse_args()

    started = time.perf_counter()
    result = bench(args)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    name = result["device"] if result["device"] != "cpu" else "cpu-exported"
    suffix = "-quick" if args.quick else ""
    out = args.out or ROOT / f"benchmarks/results/serving-{name}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    raw = result["raw_forward"]
    print(f"model: {result['model']['architecture']}, {result['model']['gflop_per_row']} "
          f"GFLOP/row; raw forward {raw['best_rows_per_s']:.0f} rows/s at batch "
          f"{raw['best_batch']}")  # fmt: skip
    for level, run in result["runs"].items():
        lat = run["latency_ms"]
        print(f"{level}: {run['rows_per_s']:.0f} rows/s ({run['throughput_rps']:.0f} req/s), "
              f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, errors {run['errors']}")  # fmt: skip
    for name_, t in result["targets"].items():
        state = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        print(f"{name_}: {t.get('observed', '')} {t.get('target', '')} {state}".replace("  ", " "))
    print(f"wrote {out} in {result['wall_s']} s")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
