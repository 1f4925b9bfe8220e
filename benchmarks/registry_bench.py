"""Registry benchmark: what a CI job pays per command, in local and in remote mode.

    make bench    # or: .venv/bin/python benchmarks/registry_bench.py [--runs 3] [--out PATH]

Measures, in one run on this machine:
- the import floor: ``python -c "import torch, mlflow"`` (a local register, evaluate or promote
  that loads a model can't start faster), the same floor exiting with ``os._exit`` as ``mlcp``
  does (no interpreter teardown; reported beside, the targets use the floor), and
  ``mlcp --help`` (imports neither);
- the cold wall time of ``mlcp models register`` (a torch.export archive and training data;
  ``register_torch_save`` the same from a torch.save'd module, which a remote client first
  exports itself), ``mlcp evaluate`` and ``mlcp promote`` (metric, champion, schema, latency
  and drift-reference gates), each a fresh process as CI runs it, in local mode (the stores
  here: SQLite control plane and MLflow) and in remote mode (``MLCP_API_URL``/``MLCP_TOKEN``
  against the control API served on loopback from this process, whose requests are timed, so
  each remote command splits into the server's own work and the client's: starting,
  importing, exporting, uploading);
- registration through the Python API, warm, step by step.
Targets (reported, never asserted): local commands under 1.5x the import floor; remote
commands under 1.5 s beyond the server's own work. One untimed round per mode first creates
the stores and warms the server, then ``--runs`` rounds of register -> evaluate -> promote.
Numbers are medians (and max) over the rounds; compare ratios, not absolutes (shared machines).
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
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MLCP = str(Path(sys.executable).parent / "mlcp")
NAME = "bench"
COMMANDS = ("register", "evaluate", "promote")
POLICY = """\
gates:
  metrics: [{metric: roc_auc, min: 0.6}]
  champion: [{metric: roc_auc, direction: higher, max_drop: 0.05}]
  schema: {inputs: [{dtype: float32, shape: [-1, 8]}]}
  latency: {batch_sizes: [1, 32], p99_ms: 50}
  drift_reference: true
"""
TARGETS = {"local_over_import_floor_max": 1.5, "remote_client_s_max": 1.5}
# The floor as `mlcp` itself exits (controlplane.cli.run): no module-by-module teardown.
BARE_FLOOR = "import os, torch, mlflow; os._exit(0)"


def summary_s(samples: list[float]) -> dict[str, float | int]:
    return {
        "runs": len(samples),
        "median_s": round(statistics.median(samples), 3),
        "max_s": round(max(samples), 3),
    }


def timed(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[1:4])} exited {done.returncode}: {done.stderr[-800:]}")
    return elapsed


# -- inputs ---------------------------------------------------------------------------------
def write_inputs(work: Path) -> None:
    """A scoring model (torch.save), its example, labelled training and evaluation data."""
    import pandas as pd
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1), torch.nn.Sigmoid()
    )
    with torch.no_grad():  # a model that scores the label (the first two columns' sum)
        net[0].weight.zero_()
        net[0].weight[0, :2] = 4.0
        net[0].bias.zero_()
        net[2].weight.zero_()
        net[2].weight[0, 0] = 1.0
        net[2].bias.fill_(-4.0)
    torch.save(net.eval(), work / "model.pt")
    # What a training job that knows it registers remotely saves: an exported program.
    x = torch.rand(4, 8)
    program = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    torch.export.save(program, str(work / "model.pt2"))
    rng = np.random.default_rng(0)
    np.save(work / "x.npy", rng.random((8, 8), dtype=np.float32))
    for split, rows in (("train", 2000), ("eval", 1000)):
        x = rng.random((rows, 8), dtype=np.float32)
        frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(8)])
        frame["y"] = (x[:, 0] + x[:, 1] > 1.0).astype(np.int64)
        frame.to_parquet(work / f"{split}.parquet", index=False)
    (work / "policy.yaml").write_text(POLICY)


def round_argv(version: int, model: str = "model.pt2") -> dict[str, list[str]]:
    return {
        "register": [MLCP, "models", "register", NAME, "--model", model, "--input-example",
                     "x.npy", "--training-data", "train.parquet", "--label", "y"],
        "evaluate": [MLCP, "evaluate", f"{NAME}@{version}", "--data", "eval.parquet",
                     "--label", "y"],
        "promote": [MLCP, "promote", f"{NAME}@{version}"],
    }  # fmt: skip


def rounds(
    env: dict[str, str], work: Path, runs: int, server_s: Callable[[], float] | None = None
) -> dict[str, Any]:
    """One untimed round, then ``runs`` timed rounds of register -> evaluate -> promote."""
    walls: dict[str, list[float]] = {c: [] for c in COMMANDS}
    servers: dict[str, list[float]] = {c: [] for c in COMMANDS}
    for version in range(1, runs + 2):
        for command, argv in round_argv(version).items():
            before = server_s() if server_s else 0.0
            wall = timed(argv, env, work)
            if version == 1:
                continue  # creates the stores (MLflow's schema) and warms the server
            walls[command].append(wall)
            if server_s:
                servers[command].append(server_s() - before)
    # The same registration from a torch.save'd module: a remote client exports it itself.
    pickled = [*round_argv(0, model="model.pt")["register"], "--unsafe-allow-pickle"]
    walls["register_torch_save"], servers["register_torch_save"] = [], []
    for _ in range(runs):
        before = server_s() if server_s else 0.0
        walls["register_torch_save"].append(timed(pickled, env, work))
        if server_s:
            servers["register_torch_save"].append(server_s() - before)
    out: dict[str, Any] = {}
    for command in (*COMMANDS, "register_torch_save"):
        cell: dict[str, Any] = {"wall": summary_s(walls[command])}
        if server_s:
            client = [w - s for w, s in zip(walls[command], servers[command], strict=True)]
            cell["server"] = summary_s(servers[command])
            cell["client"] = summary_s(client)
        out[command] = cell
    return out


# -- the control API, served from this process ----------------------------------------------
class TimedApp:
    """An ASGI wrapper adding up the time spent in HTTP requests: the server's own work."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.busy_s = 0.0
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            with self._lock:
                self.busy_s += time.perf_counter() - start


def serve_api(home: Path) -> tuple[str, str, TimedApp, Callable[[], None]]:
    """`mlcp api`'s app on a free loopback port in a thread; (url, token, timer, stop)."""
    import socket

    import uvicorn

    from controlplane.api.app import create_app
    from controlplane.context import ControlPlane
    from controlplane.policy import Policy
    from controlplane.settings import Settings

    cp = ControlPlane(Settings(home=home, actor="admin"))
    cp.policies.set(NAME, Policy.from_yaml(POLICY), "admin")
    _, token = cp.tokens.create("ci", "promoter", "admin")
    app = TimedApp(create_app(cp))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the control API did not start within 60 s")
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(30)
        cp.close()

    return f"http://127.0.0.1:{port}", token, app, stop


# -- the Python API, warm -------------------------------------------------------------------
def bench_registration(home: Path, runs: int) -> dict[str, object]:
    import torch

    from controlplane.context import ControlPlane
    from controlplane.settings import Settings
    from registry import RegistrationRequest

    cp = ControlPlane(Settings(home=home, actor="bench"))
    cp.registry.backend  # noqa: B018 - creating a fresh MLflow store is a one-time cost
    totals: list[float] = []
    steps: dict[str, list[float]] = {}
    x = np.random.default_rng(0).random((8, 32), dtype=np.float32)
    for i in range(runs + 1):
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
        if i == 0:
            continue  # the first registration pays torch.export's one-time warm-up
        totals.append(time.perf_counter() - t0)
        # A progress line announces a step: its time runs until the next line.
        named = [("validate and record intent", t0)]
        named += [(msg.split(": ", 1)[1], at) for msg, at in marks if ": " in msg]
        ends = [at for _, at in named[1:]] + [marks[-1][1]]
        for (step, begin), end in zip(named, ends, strict=True):
            steps.setdefault(step, []).append(end - begin)
    cp.close()
    return {
        "warm": summary_s(totals),
        "warm_steps_median_ms": {
            k: round(statistics.median(v) * 1000, 1) for k, v in steps.items()
        },
        "model": "MLP 32-64-1, pt2 (torch.export), example batch 8",
    }


def verdicts(floor_s: float, local: dict[str, Any], remote: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for command in COMMANDS:
        ratio = round(local[command]["wall"]["median_s"] / floor_s, 2)
        out[f"local.{command}_over_import_floor"] = {
            "target": f"<= {TARGETS['local_over_import_floor_max']}",
            "observed": ratio,
            "met": ratio <= TARGETS["local_over_import_floor_max"],
        }
        client = remote[command]["client"]["median_s"]
        out[f"remote.{command}_client_s"] = {
            "target": f"<= {TARGETS['remote_client_s_max']}",
            "observed": client,
            "met": client <= TARGETS["remote_client_s_max"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed rounds per mode")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/registry.json")
    args = parser.parse_args()
    started = time.perf_counter()

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCP_")}
    env |= {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_LOGGING_LEVEL": "WARNING",
        "GX_ANALYTICS_ENABLED": "false",
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith(("MLFLOW_", "GX_"))})

    probes = max(5, 2 * args.runs)
    help_s = [timed([MLCP, "--help"], env) for _ in range(probes)]
    floor_s: list[float] = []
    bare_s: list[float] = []
    for _ in range(probes):  # side by side: the floor, and the floor minus interpreter teardown
        floor_s.append(timed([sys.executable, "-c", "import torch, mlflow"], env))
        bare_s.append(timed([sys.executable, "-c", BARE_FLOOR], env))
    floor, bare = statistics.median(floor_s), statistics.median(bare_s)

    with tempfile.TemporaryDirectory(prefix="mlcp-bench-") as tmp:
        root = Path(tmp)
        work = root / "ci"
        work.mkdir()
        write_inputs(work)
        local_env = env | {"MLCP_HOME": str(root / "local")}
        subprocess.run([MLCP, "policy", "set", NAME, "--file", "policy.yaml"], env=local_env,
                       cwd=work, check=True, capture_output=True)  # fmt: skip
        local = rounds(local_env, work, args.runs)
        url, token, app, stop = serve_api(root / "server")
        try:
            remote_env = env | {"MLCP_API_URL": url, "MLCP_TOKEN": token}
            remote = rounds(remote_env, work, args.runs, server_s=lambda: app.busy_s)
        finally:
            stop()
        api = bench_registration(root / "api", args.runs)

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
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "setup": {
            "commands": {k: " ".join(v[1:]) for k, v in round_argv(2).items()},
            "policy": POLICY,
            "local": "MLCP_HOME in a temporary folder: SQLite control plane and MLflow",
            "remote": "MLCP_API_URL/MLCP_TOKEN (promoter) against the control API's app served "
            "by uvicorn in the benchmark's process; server = time inside HTTP requests, client "
            "= wall - server",
            "rounds": f"1 untimed, then {args.runs} timed (register -> evaluate -> promote)",
        },
        "import_floor_torch_mlflow": summary_s(floor_s),
        # `mlcp` skips the interpreter's teardown (0.5-1 s with torch and MLflow loaded):
        # its ratio to a floor that skips it too, for comparison; the targets use the floor.
        "import_floor_without_teardown": {
            **summary_s(bare_s),
            "command": BARE_FLOOR,
            "local_over_it": {c: round(local[c]["wall"]["median_s"] / bare, 2) for c in COMMANDS},
        },
        "cli_help": summary_s(help_s),
        "commands": {"local": local, "remote": remote},
        "targets": verdicts(floor, local, remote),
        "register_api": api,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"import floor (torch + mlflow): {floor:.2f} s ({bare:.2f} s without teardown); "
          f"mlcp --help {statistics.median(help_s):.2f} s")  # fmt: skip
    for command in COMMANDS:
        lo, re_ = local[command]["wall"], remote[command]
        print(f"{command:8} local {lo['median_s']:6.2f} s ({lo['median_s'] / floor:.2f}x floor, "
              f"{lo['median_s'] / bare:.2f}x without teardown) | "
              f"remote {re_['wall']['median_s']:6.2f} s = server {re_['server']['median_s']:.2f}"
              f" + client {re_['client']['median_s']:.2f}")  # fmt: skip
    for mode in ("local", "remote"):
        cell = result["commands"][mode]["register_torch_save"]
        split = f" = server {cell['server']['median_s']:.2f} + client " \
            f"{cell['client']['median_s']:.2f}" if "server" in cell else ""  # fmt: skip
        print(f"register from torch.save, {mode}: {cell['wall']['median_s']:.2f} s{split}")
    for name, t in result["targets"].items():
        print(f"{name}: {t['observed']} (target {t['target']}) {'met' if t['met'] else 'NOT met'}")
    print(f"wrote {args.out} in {result['wall_s']} s")


if __name__ == "__main__":
    main()
