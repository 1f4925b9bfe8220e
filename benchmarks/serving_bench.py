"""Serving benchmark: `mlcp serve` against `mlflow models serve` on the same registered model.

    make bench    # or: .venv/bin/python benchmarks/serving_bench.py [--quick] [--duration S]
                  #        [--concurrency 1,16,64] [--out PATH]
    .venv/bin/python benchmarks/serving_bench.py --cells zipf,overload   # serving_traffic.py

In one run on this machine:
- a seeded PyTorch MLP (CPU: 64-256-256-1; CUDA: 1024-4096-4096-1024) is registered through
  the Python API in a temporary MLCP home, a minimal policy (the schema gate) is set, and the
  version is promoted to production, so it is the champion `mlcp serve` serves;
- the raw forward pass of that version, in process under ``torch.inference_mode`` at batch
  sizes 1..256 (rows/s): the ceiling serving can approach;
- both servers are started on loopback, each in its own process group: mlcp's
  (``mlcp serve``, the champion, its default batching) and MLflow's (``mlflow models serve -m
  models:/NAME/VERSION --env-manager local``, the settings a user gets by default); both must
  answer the same row with the registered model's prediction (within 1e-5) before any load;
- ``benchmarks/loadgen.py`` (a separate process, keep-alive connections, one row per request)
  drives each server at each concurrency, the two servers taking turns at each level so they
  share the machine's conditions; each server's own CPU time per request is recorded too.
Results go to ``benchmarks/results/serving-cpu.json`` (on CUDA
``serving-<device>-vs-mlflow.json``, the device's slug such as ``h100``; ``--quick`` adds
``-quick``). Targets are reported as met or not, never asserted. On CUDA the MLflow side is
skipped when MLflow is not installed there (the reason is recorded). A bare GPU machine (no
MLflow, no database) runs ``benchmarks/serving_gpu.sh`` instead: see benchmarks/README.md.
Compare ratios, not absolutes: shared, noisy machines.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LOADGEN = ROOT / "benchmarks" / "loadgen.py"
MODEL_NAME = "serving_bench"
SEED = 0
WIDTHS = {"cpu": (64, 256, 256, 1), "cuda": (1024, 4096, 4096, 1024)}
RAW_BATCHES = (1, 8, 32, 64, 128, 256)
READY_TIMEOUT_S = 120.0
MATCH_TOLERANCE = 1e-5
POLICY = "gates:\n  schema:\n    inputs: [{dtype: float32, shape: [-1, %d]}]\n"
TARGETS = {
    "cpu_c64_throughput_ratio_min": 3.0,  # mlcp req/s / mlflow req/s at concurrency 64
    "cpu_c64_p99_ratio_max": 1.0,  # mlcp p99 / mlflow p99 at concurrency 64
    "cuda_fraction_of_ceiling_min": 0.8,  # mlcp rows/s / best raw forward rows/s
}


# -- the model ------------------------------------------------------------------------------
def build_mlp(widths: tuple[int, ...], seed: int) -> Any:
    import torch

    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(torch.nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).eval()


def register_champion(home: Path, widths: tuple[int, ...]) -> dict[str, Any]:
    """Register the seeded MLP in a fresh MLCP home and promote it to production."""
    import numpy as np

    from controlplane.context import ControlPlane
    from controlplane.policy import Policy
    from controlplane.settings import load_settings
    from registry import RegistrationRequest

    net = build_mlp(widths, SEED)
    example = np.random.default_rng(SEED).standard_normal((8, widths[0])).astype(np.float32)
    t0 = time.perf_counter()
    cp = ControlPlane(load_settings(home=home, actor="bench"))
    try:
        version = cp.registry.register(
            RegistrationRequest(
                name=MODEL_NAME,
                model=net,
                input_example=example,
                registered_by="bench",
                description="serving benchmark: seeded MLP",
            )
        )
        t1 = time.perf_counter()
        cp.policies.set(MODEL_NAME, Policy.from_yaml(POLICY % widths[0]), "bench")
        promoted = cp.promotions.promote(version.ref, "bench")
        if promoted.outcome != "promoted":
            raise RuntimeError(f"promotion of {version.ref} ended {promoted.outcome!r}")
        t2 = time.perf_counter()
        module = cp.registry.backend.load_version(version)
        s = cp.settings
        return {
            "version": version.version,
            "ref": version.ref,
            "model_uri": version.model_uri,
            "format": version.model_format,
            "signature": dict(version.signature),
            "module": module,
            "mlflow_env": {
                "MLFLOW_TRACKING_URI": s.mlflow_tracking_uri,
                "MLFLOW_REGISTRY_URI": s.mlflow_registry_uri,
            },
            "home": home,
            "stores_and_register_s": round(t1 - t0, 2),
            "policy_and_promote_s": round(t2 - t1, 2),
        }
    finally:
        cp.close()


def raw_forward(module: Any, features: int, device: str, seconds: float) -> dict[str, Any]:
    """Rows/s of the bare forward pass at each batch size: what serving can approach.

    Each batch size runs in 5 slices and keeps the best: other tenants of a shared machine
    steal whole slices (with 2 intra-op threads on 2 cores a stolen core stalls both), and a
    ceiling is what the hardware does when it is free. On CPU the same is measured with one
    intra-op thread as well: a server on 2 cores leaves one to HTTP.
    """
    import torch

    def measure() -> dict[str, float]:
        per_batch: dict[str, float] = {}
        with torch.inference_mode():
            for batch in RAW_BATCHES:
                x = torch.randn(batch, features, device=device)
                per_batch[str(batch)] = round(
                    max(_rows_per_s(module, x, seconds / 5, cuda) for _ in range(5)), 1
                )
        return per_batch

    cuda = device.startswith("cuda")
    threads = torch.get_num_threads()
    by_threads = {threads: measure()}
    if not cuda and threads > 1:
        torch.set_num_threads(1)
        try:
            by_threads[1] = measure()
        finally:
            torch.set_num_threads(threads)
    best_threads, best_batch = max(
        ((n, b) for n, rows in by_threads.items() for b in rows),
        key=lambda nb: by_threads[nb[0]][nb[1]],
    )
    return {
        "rows_per_s": by_threads[threads],
        **({"rows_per_s_1_thread": by_threads[1]} if 1 in by_threads else {}),
        "best_rows_per_s": by_threads[best_threads][best_batch],
        "best_batch": int(best_batch),
        "best_torch_threads": best_threads,
        "torch_threads_default": threads,
        "seconds_per_batch_size": seconds,
        "mode": "torch.inference_mode, the registered version as loaded from MLflow",
    }


def _rows_per_s(module: Any, x: Any, seconds: float, cuda: bool) -> float:
    import torch

    block = 50 if cuda else 10  # forward calls between clock reads
    for _ in range(block):
        module(x)
    if cuda:
        torch.cuda.synchronize()
    calls, t0 = 0, time.perf_counter()
    while True:
        for _ in range(block):
            module(x)
        calls += block
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return calls * x.shape[0] / elapsed


# -- servers --------------------------------------------------------------------------------
@dataclass
class Server:
    """A server subprocess in its own process group, its log, and where it answers."""

    name: str
    argv: list[str]
    infer_url: str
    ready_url: str
    proc: subprocess.Popen[bytes]
    log: Path
    startup_s: float | None = None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def cpu_s(self) -> float | None:
        """CPU seconds used so far by the live processes of the server's process group."""
        return group_cpu_s(self.proc.pid)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def group_cpu_s(pgid: int) -> float | None:
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[2]) == pgid:  # pgrp; utime and stime follow at 11 and 12
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


@contextlib.contextmanager
def running(
    name: str, argv: list[str], env: dict[str, str], infer_url: str, ready_url: str, logs: Path
) -> Iterator[Server]:
    """Start a server, wait until ``ready_url`` answers 200, and always kill its group."""
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(name, argv, infer_url, ready_url, proc, log)
    try:
        wait_ready(server, READY_TIMEOUT_S)
        server.startup_s = round(time.perf_counter() - t0, 2)
        yield server
    finally:
        stop(proc)


def wait_ready(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.proc.returncode} before it was ready; "
                f"its log ends:\n{server.log_tail()}"
            )
        with (
            contextlib.suppress(OSError, http.client.HTTPException),
            urllib.request.urlopen(server.ready_url, timeout=2) as response,
        ):
            if response.status == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{server.name} not ready at {server.ready_url} after {timeout_s:.0f} s; "
                f"its log ends:\n{server.log_tail()}"
            )
        time.sleep(0.25)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole group, SIGKILL to what is left after 10 s."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; a worker it forked may linger in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return


def post_json(url: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[:500]
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")[:500]


# -- payloads -------------------------------------------------------------------------------
def payloads(row: list[float]) -> dict[str, bytes]:
    """The same row in each server's format; both parse the very same decimal text."""
    oip = {"inputs": [{"name": "input", "shape": [1, len(row)], "datatype": "FP32", "data": row}]}
    return {
        "mlcp": json.dumps(oip).encode(),
        "mlflow": json.dumps({"inputs": [row]}).encode(),
    }


def prediction(name: str, answer: Any) -> list[float]:
    if name == "mlcp":
        return [float(v) for v in answer["outputs"][0]["data"]]
    predictions = answer["predictions"] if isinstance(answer, dict) else answer
    flat: list[float] = []
    stack = [predictions]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(float(item))
    return flat


def check_predictions(
    servers: dict[str, Server], bodies: dict[str, bytes], reference: list[float]
) -> dict[str, Any]:
    out: dict[str, Any] = {"tolerance": MATCH_TOLERANCE, "reference_first": reference[:4]}
    for name, server in servers.items():
        status, answer = post_json(server.infer_url, bodies[name])
        if status != 200:
            out[name] = {"status": status, "answer": answer, "passed": False}
            continue
        try:
            got = prediction(name, answer)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            out[name] = {"status": status, "answer": answer, "passed": False, "error": repr(exc)}
            continue
        diff = (
            max(abs(a - b) for a, b in zip(got, reference, strict=True))
            if len(got) == len(reference)
            else None  # a different shape: no comparison
        )
        out[name] = {
            "status": status,
            "first": got[:4],
            "values": len(got),
            "max_abs_diff_vs_registered": diff,
            "passed": diff is not None and diff <= MATCH_TOLERANCE,
        }
    passed = [out[n]["passed"] for n in servers]
    out["passed"] = bool(passed) and all(passed)
    if len(servers) == 2 and all(passed):
        a, b = (prediction(n, post_json(s.infer_url, bodies[n])[1]) for n, s in servers.items())
        out["max_abs_diff_between_servers"] = max(abs(x - y) for x, y in zip(a, b, strict=True))
    return out


# -- load -----------------------------------------------------------------------------------
def drive(
    server: Server, body_file: Path, concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    cpu0 = server.cpu_s()
    done = subprocess.run(
        [sys.executable, str(LOADGEN), "--url", server.infer_url, "--body-file", str(body_file),
         "--concurrency", str(concurrency), "--duration", str(duration), "--warmup", str(warmup)],
        capture_output=True, text=True, timeout=warmup + duration + 120, check=False,
    )  # fmt: skip
    cpu1 = server.cpu_s()
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    keep = ("throughput_rps", "ok", "errors", "errors_by_status", "latency_ms")
    row = {k: result[k] for k in keep}
    if cpu0 is not None and cpu1 is not None:
        # Warm-up and window together: the server's CPU time over every request it answered.
        row["server_cpu_util"] = round((cpu1 - cpu0) / (warmup + duration), 3)
        row["server_cpu_ms_per_request"] = round(
            (cpu1 - cpu0) / max(1, result["answered_total"]) * 1000, 3
        )
    row["loadgen_cpu_util"] = result["loadgen_cpu_util"]
    row["loadgen_cpu_us_per_request"] = result["loadgen_cpu_us_per_request"]
    if result["errors"]:
        row["sample_error_body"] = result["sample_error_body"]
    if server.proc.poll() is not None:
        raise RuntimeError(f"{server.name} died under load; its log ends:\n{server.log_tail()}")
    return row


# -- facts and verdicts ---------------------------------------------------------------------
def device_facts() -> dict[str, Any]:
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return {"device": "cuda", "slug": device_slug(name), "name": name}
    return {"device": "cpu", "slug": "cpu", "name": _cpu_model()}


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'h100'; 'NVIDIA A100-SXM4-80GB' -> 'a100'."""
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w and w != "nvidia"]
    for i, word in enumerate(words):
        if re.fullmatch(r"[a-z]+\d+[a-z]*", word):
            return word
        if word.isdigit() and i > 0:  # 'GeForce RTX 4090' -> 'rtx4090'
            return words[i - 1] + word
    return "-".join(words[:2]) or "cuda"


def machine(device: dict[str, Any]) -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": device["name"],
    }
    try:
        import mlflow

        facts["mlflow"] = mlflow.__version__
    except ImportError:
        facts["mlflow"] = None
    for module in ("uvicorn", "fastapi", "uvloop", "httptools"):
        try:
            facts[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            facts[module] = None
    if device["device"] == "cuda":
        facts["cuda"] = torch.version.cuda
    # Thread settings the servers inherit from this environment (unset: torch's defaults).
    facts["env"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    facts["loadavg_at_start"] = _loadavg()
    return facts


def _loadavg() -> list[float] | None:
    """Other tenants of a shared machine show up here: compare runs only at similar loads."""
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def ratios(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for level, mlcp in runs.get("mlcp", {}).items():
        mlflow = runs.get("mlflow", {}).get(level)
        if not mlflow or not mlflow["throughput_rps"] or not mlflow["latency_ms"]["p99"]:
            continue
        p99 = mlcp["latency_ms"]["p99"]
        out[level] = {
            "throughput": round(mlcp["throughput_rps"] / mlflow["throughput_rps"], 2),
            "p99": None if p99 is None else round(p99 / mlflow["latency_ms"]["p99"], 3),
        }
    return out


def targets(
    device: str, runs: dict[str, Any], ratio: dict[str, Any], ceiling: dict[str, Any] | None
) -> dict[str, Any]:
    if device == "cpu":
        at = ratio.get("c64")
        if at is None:
            return {"c64 vs mlflow": {"met": None, "why": "no mlcp and mlflow runs at c64"}}
        return {
            "c64_throughput_ratio": {
                "target": f">= {TARGETS['cpu_c64_throughput_ratio_min']}",
                "observed": at["throughput"],
                "met": at["throughput"] >= TARGETS["cpu_c64_throughput_ratio_min"],
            },
            "c64_p99_ratio": {
                "target": f"<= {TARGETS['cpu_c64_p99_ratio_max']}",
                "observed": at["p99"],
                "met": at["p99"] is not None and at["p99"] <= TARGETS["cpu_c64_p99_ratio_max"],
            },
        }
    mlcp = runs.get("mlcp", {})
    if not mlcp or ceiling is None:
        return {"fraction_of_ceiling": {"met": None, "why": "no mlcp runs"}}
    level, best = max(mlcp.items(), key=lambda kv: kv[1]["throughput_rps"])
    fraction = round(best["throughput_rps"] / ceiling["best_rows_per_s"], 3)
    return {
        "fraction_of_ceiling": {
            "target": f">= {TARGETS['cuda_fraction_of_ceiling_min']}",
            "observed": fraction,
            "at": level,
            "mlcp_rows_per_s": best["throughput_rps"],
            "ceiling_rows_per_s": ceiling["best_rows_per_s"],
            "met": fraction >= TARGETS["cuda_fraction_of_ceiling_min"],
        }
    }


def table(runs: dict[str, Any], ratio: dict[str, Any]) -> str:
    head = f"{'server':7} {'conc':>4} | {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} | "
    head += f"{'srv ms/req':>10} {'gen cpu':>7}"
    lines = [head, "-" * len(head)]
    for name, levels in runs.items():
        for level, r in levels.items():
            lat = r["latency_ms"]
            lines.append(
                f"{name:7} {level[1:]:>4} | {r['throughput_rps']:>8.1f} {lat['p50'] or 0:>8.2f} "
                f"{lat['p99'] or 0:>8.2f} {r['errors']:>6} | "
                f"{r.get('server_cpu_ms_per_request', 0):>10.3f} {r['loadgen_cpu_util']:>7.2f}"
            )
    for level, r in ratio.items():
        lines.append(f"mlcp/mlflow at {level}: throughput x{r['throughput']}, p99 x{r['p99']}")
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------
def start_servers(
    stack: contextlib.ExitStack,
    wanted: list[str],
    reg: dict[str, Any],
    env: dict[str, str],
    work: Path,
    mlcp_args: list[str],
    result: dict[str, Any],
    skipped: dict[str, str],
) -> dict[str, Server]:
    """Start the wanted servers on free loopback ports; ``stack`` stops them."""
    servers: dict[str, Server] = {}
    env = env | reg["mlflow_env"] | {"MLCP_HOME": str(reg["home"]), "MLCP_ACTOR": "bench"}
    if "mlflow" in wanted:
        uri = reg["model_uri"]  # the registered version itself: models:/NAME/1
        port = free_port()
        argv = [str(BIN / "mlflow"), "models", "serve", "-m", uri,
                "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        servers["mlflow"] = stack.enter_context(
            running("mlflow", argv, env, f"{base}/invocations", f"{base}/ping", work)
        )
    if "mlcp" in wanted:
        if not (ROOT / "controlplane" / "cli" / "serve.py").exists():
            skipped["mlcp"] = "controlplane/cli/serve.py does not exist yet"
            return servers
        port = free_port()
        argv = [str(BIN / "mlcp"), "serve", "--host", "127.0.0.1", "--port", str(port),
                "--model", MODEL_NAME, *mlcp_args]  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        infer = f"{base}/v2/models/{MODEL_NAME}/infer"
        servers["mlcp"] = stack.enter_context(
            running("mlcp", argv, env, infer, f"{base}/v2/health/ready", work)
        )
    return servers


def bench(args: argparse.Namespace, env: dict[str, str], device: dict[str, Any]) -> dict[str, Any]:
    import torch

    duration = args.duration or (3.0 if args.quick else 15.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0)
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]
    kind = device["device"]
    widths = WIDTHS[kind]
    skipped: dict[str, str] = {}
    if kind == "cuda" and "mlflow" in wanted:
        try:
            import mlflow  # noqa: F401 - only asks whether it is installed
        except ImportError:
            wanted.remove("mlflow")
            skipped["mlflow"] = "mlflow is not installed on this machine"
    runs: dict[str, dict[str, Any]] = {}
    result: dict[str, Any] = {
        "benchmark": "serving",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": device["slug"],
        "machine": machine(device),
        "model": {
            "name": MODEL_NAME,
            "architecture": "MLP " + "-".join(map(str, widths)) + f" (ReLU), seed {SEED}",
            "parameters": sum(p.numel() for p in build_mlp(widths, SEED).parameters()),
        },
        "settings": {
            "quick": args.quick,
            "duration_s": duration,
            "warmup_s": warmup,
            "concurrency": levels,
            "rows_per_request": 1,
            "loadgen": "benchmarks/loadgen.py: one keep-alive HTTP/1.1 connection per concurrent "
            "client, closed loop, pre-encoded request, separate process",
            "order": "both servers up at once; at each concurrency level they take turns, "
            "which one goes first alternating from level to level",
            "percentiles": "nearest rank over the requests completed in the window",
        },
    }

    with tempfile.TemporaryDirectory(prefix="mlcp-serving-bench-") as tmp:
        work = Path(tmp)
        reg: dict[str, Any] | None
        try:
            reg = register_champion(work / ".mlcp", widths)
        except Exception as exc:
            if kind == "cpu":
                raise
            # A GPU machine may lack the control plane's wheels (mlflow, sqlalchemy...).
            reg, why = None, f"{type(exc).__name__}: {exc}"
            skipped |= {name: f"cannot register the model here: {why}" for name in wanted}
            wanted = []
        target = "cuda" if kind == "cuda" else "cpu"
        module = (reg.pop("module") if reg else build_mlp(widths, SEED)).to(target)
        if reg:
            keys = ("ref", "model_uri", "version", "format", "signature")
            result["model"] |= {k: reg[k] for k in keys}
            result["setup"] = {k: reg[k] for k in ("stores_and_register_s", "policy_and_promote_s")}

        ceiling = raw_forward(module, widths[0], target, 0.5 if args.quick else 2.0)
        if not reg:
            ceiling["mode"] = "torch.inference_mode, the seeded MLP built in process"
        result["raw_forward"] = ceiling

        row = [round(float(v), 4) for v in torch.randn(widths[0], generator=_gen())]
        with torch.inference_mode():
            reference = module(torch.tensor([row], device=target)).flatten().tolist()
        bodies = payloads(row)
        for name, body in bodies.items():
            (work / f"{name}.json").write_bytes(body)

        with contextlib.ExitStack() as stack:
            servers = (
                start_servers(stack, wanted, reg, env, work, args.mlcp_arg, result, skipped)
                if reg
                else {}
            )
            result["servers"] = server_settings(servers, args.mlcp_arg)
            check = check_predictions(servers, bodies, reference)
            result["prediction_check"] = check
            for name in list(servers):
                if not check[name]["passed"]:
                    skipped[name] = f"its answer does not match the registered model: {check[name]}"
                    del servers[name]

            for i, level in enumerate(levels):
                order = list(servers) if i % 2 == 0 else list(reversed(servers))
                for name in order:
                    print(f"{name} at concurrency {level} ...", file=sys.stderr, flush=True)
                    runs.setdefault(name, {})[f"c{level}"] = drive(
                        servers[name], work / f"{name}.json", level, duration, warmup
                    )

    ratio = ratios(runs)
    return result | {
        "runs": runs,
        "ratios_mlcp_over_mlflow": ratio,
        "targets": targets(kind, runs, ratio, result.get("raw_forward")),
        "skipped": skipped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke check")
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 15)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds per run (default 3)")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated levels")
    parser.add_argument("--servers", default="mlcp,mlflow", help="which servers to drive")
    parser.add_argument(
        "--mlcp-arg", action="append", default=[], help="extra `mlcp serve` argument, repeatable"
    )
    parser.add_argument(
        "--out", type=Path, help="default benchmarks/results/serving-<device>[-quick].json"
    )
    parser.add_argument(
        "--cells",
        default="mlflow",
        help="mlflow (mlcp against mlflow, the default), or any of zipf,overload: the prediction "
        "cache on a Zipf workload and priority classes under overload (serving_traffic.py; "
        "results in benchmarks/results/serving-traffic.json)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="zipf: runs per replica")
    parser.add_argument("--zipf-concurrency", type=int, default=32)
    parser.add_argument("--critical-concurrency", type=int, default=4)
    parser.add_argument("--batch-concurrency", type=int, default=64)
    args = parser.parse_args()
    started = time.perf_counter()
    cells = set(args.cells.split(","))
    if cells & {"zipf", "overload"}:
        import serving_traffic

        args.duration = args.duration or (3.0 if args.quick else 10.0)
        args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0)
        args.cells = cells
        serving_traffic.main(args)
        return

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCP_")}
    env |= {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_LOGGING_LEVEL": "WARNING",
        "GX_ANALYTICS_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
        # `mlflow models serve --env-manager local` execs `uvicorn` from PATH.
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith(("MLFLOW_", "GX_"))})

    device = device_facts()
    result = bench(args, env, device)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["machine"]["loadavg_at_end"] = _loadavg()
    # A smoke run never overwrites the real results.
    suffix = "-quick" if args.quick else ""
    # On CUDA serving-<device>.json is benchmarks/serving_gpu.py's (the bare-machine run).
    name = device["slug"] if device["device"] == "cpu" else f"{device['slug']}-vs-mlflow"
    out = args.out or ROOT / f"benchmarks/results/serving-{name}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print(table(result["runs"], result["ratios_mlcp_over_mlflow"]))
    rf = result["raw_forward"]
    print(f"raw forward: best {rf['best_rows_per_s']:.0f} rows/s at batch {rf['best_batch']}")
    for name, why in result["skipped"].items():
        print(f"skipped {name}: {why}")
    for name, t in result["targets"].items():
        verdict = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        print(f"{name}: {t.get('observed')} (target {t.get('target')}) {verdict}")
    print(f"wrote {out} in {result['wall_s']} s")


def _gen() -> Any:
    import torch

    return torch.Generator().manual_seed(SEED + 1)


def server_settings(servers: dict[str, Server], mlcp_args: list[str]) -> dict[str, Any]:
    """What each server ran with: the argv and the defaults that argv leaves in force."""
    out: dict[str, Any] = {}
    if "mlflow" in servers:
        s = servers["mlflow"]
        out["mlflow"] = {
            "argv": s.argv,
            "startup_s": s.startup_s,
            "defaults": {
                "server": "uvicorn running mlflow.pyfunc.scoring_server.app:app (FastAPI)",
                "workers": int(os.environ.get("MLFLOW_MODELS_WORKERS") or 1),
                "request_timeout_s": int(
                    os.environ.get("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT") or 60
                ),
                "per_request": "body parsed to numpy (schema enforced), predict in "
                "asyncio.to_thread (default thread pool), no batching across requests",
                "payload": '{"inputs": [[...]]} to POST /invocations',
            },
        }
    if "mlcp" in servers:
        s = servers["mlcp"]
        defaults: dict[str, Any] = {}
        with contextlib.suppress(ImportError):
            from dataclasses import asdict

            from serving.config import BatchingConfig, RuntimeConfig

            defaults = {"batching": asdict(BatchingConfig()), "runtime": asdict(RuntimeConfig())}
        out["mlcp"] = {
            "argv": s.argv,
            "startup_s": s.startup_s,
            "extra_args": mlcp_args,
            "defaults": defaults,
            "payload": "Open Inference Protocol v2 JSON to POST /v2/models/{name}/infer",
        }
    return out


if __name__ == "__main__":
    main()
