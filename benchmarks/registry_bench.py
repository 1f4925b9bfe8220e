"""Registry benchmark: CLI start-up and registration end to end, on the embedded stores.

    make bench    # or: .venv/bin/python benchmarks/registry_bench.py [--runs 5] [--out PATH]

Measures, in one run on this machine:
- `mlcp --help` wall time, next to `python -c "import mlflow"` (the import the CLI avoids);
- registration through the Python API (one new version each), with per-step times;
- registration through the CLI (`mlcp models register`, a fresh process each).
Numbers are medians and p90 over the runs; compare ratios, not absolutes (shared machines).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MLCP = str(Path(sys.executable).parent / "mlcp")


def summary(samples: list[float]) -> dict[str, float | int]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "runs": len(samples),
        "median_ms": round(statistics.median(samples) * 1000, 1),
        "p90_ms": round(p90 * 1000, 1),
        "min_ms": round(ordered[0] * 1000, 1),
    }


def time_command(argv: list[str], runs: int, env: dict[str, str]) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        out.append(time.perf_counter() - start)
    return out


def bench_registration(home: Path, runs: int) -> dict[str, object]:
    import torch

    from controlplane.context import ControlPlane
    from controlplane.settings import Settings
    from registry import RegistrationRequest

    start = time.perf_counter()
    cp = ControlPlane(Settings(home=home, actor="bench"))
    cp.registry.backend  # noqa: B018 - creating a fresh MLflow store is a one-time cost
    first_use = time.perf_counter() - start

    totals: list[float] = []
    steps: dict[str, list[float]] = {}
    x = np.random.default_rng(0).random((8, 32), dtype=np.float32)
    for i in range(runs):
        torch.manual_seed(i)
        net = torch.nn.Sequential(
            torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)
        ).eval()
        marks: list[tuple[str, float]] = []
        t0 = time.perf_counter()
        cp.registry.register(
            RegistrationRequest(name="bench", model=net, input_example=x, registered_by="bench"),
            progress=lambda msg, marks=marks: marks.append((msg, time.perf_counter())),
        )
        totals.append(time.perf_counter() - t0)
        # A progress line announces a step: its time runs until the next line.
        named = [("validate and record intent", t0)]
        named += [(msg.split(": ", 1)[1], at) for msg, at in marks if ": " in msg]
        ends = [at for _, at in named[1:]] + [marks[-1][1]]
        if i > 0:  # the first registration pays torch.export's one-time warm-up
            for (step, begin), end in zip(named, ends, strict=True):
                steps.setdefault(step, []).append(end - begin)
    cp.close()
    return {
        "first_use_s": round(first_use, 2),
        "first_registration_ms": round(totals[0] * 1000, 1),
        "warm": summary(totals[1:]),
        "warm_steps_median_ms": {
            k: round(statistics.median(v) * 1000, 1) for k, v in steps.items()
        },
        "model": "MLP 32-64-1, pt2 (torch.export), example batch 8",
    }


def bench_cli_registration(home: Path, runs: int, env: dict[str, str]) -> dict[str, object]:
    import torch

    work = home.parent
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    torch.save(net, work / "model.pt")
    np.save(work / "x.npy", np.random.default_rng(0).random((8, 32), dtype=np.float32))
    argv = [MLCP, "models", "register", "bench-cli", "--model", str(work / "model.pt"),
            "--input-example", str(work / "x.npy")]  # fmt: skip
    env = {**env, "MLCP_HOME": str(home)}
    subprocess.run([MLCP, "models", "list"], check=True, capture_output=True, env=env)
    return {"end_to_end": summary(time_command(argv, runs, env))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/registry.json")
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCP_")}
    env |= {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_LOGGING_LEVEL": "WARNING",
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("MLFLOW_")})

    help_runs = max(10, args.runs * 2)
    help_s = time_command([MLCP, "--help"], help_runs, env)
    mlflow_s = time_command([sys.executable, "-c", "import mlflow"], help_runs, env)
    with tempfile.TemporaryDirectory(prefix="mlcp-bench-") as tmp:
        api = bench_registration(Path(tmp) / "api" / ".mlcp", args.runs)
        cli = bench_cli_registration(Path(tmp) / "cli" / ".mlcp", max(3, args.runs // 2), env)

    import mlflow
    import torch

    result = {
        "benchmark": "registry",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "mlflow": mlflow.__version__,
            "platform": platform.platform(),
        },
        "cli_help": summary(help_s),
        "python_import_mlflow": summary(mlflow_s),
        "help_vs_import_mlflow_ratio": round(
            statistics.median(help_s) / statistics.median(mlflow_s), 3
        ),
        "register_api": api,
        "register_cli": cli,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
