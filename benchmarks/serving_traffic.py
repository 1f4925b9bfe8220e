"""Serving under real traffic: the prediction cache on a Zipf workload, priority classes under
overload, and what the demo model's predictions cost. Run through `serving_bench.py`:

    .venv/bin/python benchmarks/serving_bench.py --cells zipf,overload [--duration S]

In one run on this machine:
- ``mlcp demo --no-scenes`` builds its churn model in a temporary MLCP home (features in Feast, two
  versions through their gates; `churn@1` is the champion); the demo's customer features are
  extended to 10,000 customers and materialized again;
- two `mlcp serve` replicas of that home start side by side: one with the model's policy as
  the demo left it (no prediction cache), then, after ``serving: {cache: ...}`` is added to
  the policy, one that loads the champion with its cache (the first keeps what it loaded);
- **zipf**: entity requests (one customer each) whose customer ids are drawn from a Zipf
  distribution (s = 1.1 over 10,000 customers) are replayed by `loadgen.py` at one
  concurrency against each replica in turn, for several rounds: throughput and p99 with the
  cache on and off, and the cache's hit rate from its Prometheus counters; then the replica
  with the cache, offered (open loop) twice the throughput the one without it reached: does
  it keep up, and is its p99 then no higher than the other's? Twice: for the
  demo's `churn@1` (a tiny MLP: well under a millisecond a batch, so HTTP is most of a
  request's cost on a CPU) and for `churn_heavy@1`, the same MLP trained the same way on the
  same features, plus the work of a 2048-wide, four-layer network on every row (`RowWork`,
  about 0.6 ms a row at batch 32 on one thread here): a model whose compute is worth saving;
- **overload**: against the replica without a cache, critical-class requests at a small
  concurrency alone, then again while batch-class requests flood it from another load
  generator (closed loop, far more than the replica can take; a connection answered 503
  waits the 1 s its Retry-After says, as a well-behaved client does): the critical p99 with
  and without that load;
- **cost**: each replica's device-seconds and predictions (``/metrics``) and
  ``mlcp deployments churn --json`` at a nominal price of 1.00 per device-hour.
Targets (cache: >= 2x throughput at no higher p99; overload: critical p99 within 1.5x) are
reported as met or not, never asserted. Compare ratios measured in the same run: the machine
is shared and noisy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from serving_bench import BIN, LOADGEN, free_port, running  # noqa: E402

CUSTOMERS = 10_000
ZIPF_S = 1.1
SEQUENCE = 200_000  # requests drawn; the load generator replays them in order
PRICE = 1.0  # nominal price per device-hour: the cost figures scale with it
CACHE = {"ttl_s": 300.0, "max_entries": 20_000}
MODELS = ("churn", "churn_heavy")  # the demo's champion, and one whose compute matters
OPEN_LOOP_CONNECTIONS = 64  # enough for the offered rate at the p99s seen here
TARGETS = {
    "zipf_throughput_ratio_min": 2.0,
    "zipf_p99_ratio_max": 1.0,
    "overload_p99_ratio_max": 1.5,
}


def zipf_bodies(path: Path, seed: int = 0) -> dict[str, Any]:
    """Entity request bodies for customers drawn from a bounded Zipf distribution."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ranks = np.arange(1, CUSTOMERS + 1, dtype=np.float64)
    weights = ranks**-ZIPF_S
    customer_of_rank = rng.permutation(CUSTOMERS)  # popular customers spread over the ids
    drawn = customer_of_rank[rng.choice(CUSTOMERS, SEQUENCE, p=weights / weights.sum())]
    with path.open("w") as f:
        for customer in drawn:
            f.write(json.dumps({"entities": [{"customer_id": int(customer)}]}) + "\n")
    top = np.sort(weights / weights.sum())[::-1]
    return {
        "customers": CUSTOMERS,
        "s": ZIPF_S,
        "requests_drawn": SEQUENCE,
        "distinct_in_sequence": len(set(drawn.tolist())),
        "share_of_top_100": round(float(top[:100].sum()), 4),
    }


def build_home(home: Path, env: dict[str, str]) -> None:
    """`mlcp demo --no-scenes`, then its customer features extended to ``CUSTOMERS`` and
    materialized again."""
    done = subprocess.run(
        [str(BIN / "mlcp"), "demo", "--no-scenes"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"mlcp demo failed: {done.stderr[-2000:]}")
    import pandas as pd

    from controlplane.context import ControlPlane
    from controlplane.demo.setup import FEATURES, FEATURES_AT, LABELS_AT, SEED, make_churn_data
    from controlplane.settings import load_settings

    with ControlPlane(load_settings()) as cp:
        source_path = cp.settings.home / "demo" / "customer_stats.parquet"
        source = pd.read_parquet(source_path)
        have = int(source["customer_id"].max()) + 1
        more = make_churn_data(rows=CUSTOMERS - have, seed=SEED + 2)
        more = more.assign(customer_id=range(have, CUSTOMERS))[["customer_id", *FEATURES]]
        more = more.assign(event_timestamp=pd.Timestamp(FEATURES_AT))
        pd.concat([source, more], ignore_index=True).to_parquet(source_path, index=False)
        start = pd.Timestamp(FEATURES_AT) - pd.Timedelta(days=1)
        cp.features.materialize(
            "customer_stats@1", start.to_pydatetime(), pd.Timestamp(LABELS_AT).to_pydatetime(),
            "bench",
        )  # fmt: skip
        register_heavy(cp)


class RowWork(torch.nn.Module):
    """A model's answers plus zero times a ``width``-wide, ``depth``-layer network's output on
    every row: the answers of the model it wraps at the compute of a bigger one."""

    def __init__(self, inner: torch.nn.Module, inputs: int = 5, width: int = 2048,
                 depth: int = 4) -> None:  # fmt: skip
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.inner, self.depth = inner, depth
        self.w_in = torch.nn.Parameter(torch.randn(inputs, width, generator=generator))
        self.w = torch.nn.Parameter(torch.randn(width, width, generator=generator) / width**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x @ self.w_in
        for _ in range(self.depth):
            h = torch.tanh(h @ self.w)
        return self.inner(x) + 0.0 * h.sum(dim=1, keepdim=True)


def register_heavy(cp: Any) -> None:
    """``churn_heavy@1``: the demo's baseline recipe on the demo's training rows, wrapped in
    `RowWork`, evaluated and promoted through the demo's policy."""
    import pandas as pd

    from controlplane.demo import setup
    from controlplane.policy import Policy

    demo = cp.settings.home / "demo"
    rows = pd.read_parquet(demo / "churn_train.parquet")
    entities = rows[["customer_id", setup.LABEL]].assign(
        event_timestamp=pd.Timestamp(setup.LABELS_AT)
    )
    training = cp.features.training_set(setup.SERVICE, entities, labels=(setup.LABEL,))
    base = setup.BASELINE
    heavy = setup.Flavour("heavy", base.epochs, base.hidden, story="the cache's other case")
    version, _ = setup.register(
        cp, training, demo / "churn_train.parquet", heavy, print, name="churn_heavy",
        wrap=RowWork,
    )  # fmt: skip
    cp.policies.set("churn_heavy", Policy.from_yaml(setup.demo_policy()), "bench")
    setup.evaluate(cp, version, demo / "churn_eval.parquet", print)
    promoted = cp.promotions.promote(version.ref, "bench")
    if promoted.outcome != "promoted":
        raise RuntimeError(f"churn_heavy@1 was not promoted: {promoted.reason}")


def enable_cache() -> None:
    from controlplane.context import ControlPlane
    from controlplane.policy import CacheRule, Serving
    from controlplane.settings import load_settings

    with ControlPlane(load_settings()) as cp:
        for model in MODELS:
            current = cp.policies.current(model).policy
            policy = current.model_copy(update={"serving": Serving(cache=CacheRule(**CACHE))})
            cp.policies.set(model, policy, "bench")


def serve_argv(port: int) -> list[str]:
    return [
        str(BIN / "mlcp"), "serve", "--model", MODELS[0], "--model", MODELS[1],
        "--port", str(port), "--window-s", "2", "--heartbeat-s", "1",
        "--device-hour-price", str(PRICE),
    ]  # fmt: skip


def metrics(port: int, ref: str = "churn@1") -> dict[str, float]:
    """The replica's series for ``ref`` that this benchmark reads."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for name in (
        f'mlcp_serving_cache_lookups_total{{outcome="hit",ref="{ref}"}}',
        f'mlcp_serving_cache_lookups_total{{outcome="miss",ref="{ref}"}}',
        f'mlcp_serving_device_seconds_total{{ref="{ref}"}}',
        f'mlcp_serving_predictions_total{{ref="{ref}"}}',
        f'mlcp_serving_cost_per_1k_predictions{{ref="{ref}"}}',
        "mlcp_serving_busy",
    ):
        found = re.search(re.escape(name) + r" ([0-9.e+-]+)", text)
        out[name.split("{")[0] + ("." + name.split('"')[1] if "outcome" in name else "")] = (
            float(found.group(1)) if found else 0.0
        )
    return out


def drive(
    url: str,
    bodies: Path,
    concurrency: int,
    duration: float,
    warmup: float,
    headers: tuple[str, ...] = (),
    rate: float = 0.0,
) -> dict[str, Any]:
    argv = [
        sys.executable, str(LOADGEN), "--url", url, "--bodies-file", str(bodies),
        "--concurrency", str(concurrency), "--duration", str(duration), "--warmup", str(warmup),
        "--rate", str(rate),
    ]  # fmt: skip
    for header in headers:
        argv += ["--header", header]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=warmup + duration + 120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    keep = ("throughput_rps", "ok", "errors", "errors_by_status", "latency_ms")
    return {k: result[k] for k in keep}


def zipf_cell(ports: dict[str, int], bodies: Path, args: Any) -> dict[str, Any]:
    return {model: zipf_runs(model, ports, bodies, args) for model in MODELS}


def zipf_runs(model: str, ports: dict[str, int], bodies: Path, args: Any) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    before = metrics(ports["on"], f"{model}@1")
    for round_ in range(args.rounds):
        order = ("off", "on") if round_ % 2 == 0 else ("on", "off")
        for name in order:
            url = f"http://127.0.0.1:{ports[name]}/v1/models/{model}/predict"
            runs[name].append(drive(url, bodies, args.zipf_concurrency, args.duration, args.warmup))
    after = metrics(ports["on"], f"{model}@1")
    hits = (
        after["mlcp_serving_cache_lookups_total.hit"]
        - before["mlcp_serving_cache_lookups_total.hit"]
    )
    misses = (
        after["mlcp_serving_cache_lookups_total.miss"]
        - before["mlcp_serving_cache_lookups_total.miss"]
    )
    summary = {
        name: {
            "throughput_rps": statistics.median(r["throughput_rps"] for r in rows),
            "p99_ms": statistics.median(r["latency_ms"]["p99"] for r in rows),
            "p50_ms": statistics.median(r["latency_ms"]["p50"] for r in rows),
        }
        for name, rows in runs.items()
    }
    throughput = summary["on"]["throughput_rps"] / summary["off"]["throughput_rps"]
    p99 = summary["on"]["p99_ms"] / summary["off"]["p99_ms"]
    # The same question asked at a fixed load: offered twice what the replica without the
    # cache answered (open loop), does the cached one keep up, and at what p99?
    rate = TARGETS["zipf_throughput_ratio_min"] * summary["off"]["throughput_rps"]
    url = f"http://127.0.0.1:{ports['on']}/v1/models/{model}/predict"
    at_rate = drive(url, bodies, OPEN_LOOP_CONNECTIONS, args.duration, args.warmup, rate=rate)
    return {
        "concurrency": args.zipf_concurrency,
        "rounds": args.rounds,
        "runs": runs,
        "median": summary,
        "hit_rate": round(hits / max(1.0, hits + misses), 4),
        "lookups": {"hit": hits, "miss": misses},
        "throughput_ratio_on_over_off": round(throughput, 3),
        "p99_ratio_on_over_off": round(p99, 3),
        "cache_on_at_twice_off_throughput": {
            "offered_rps": round(rate, 1),
            "connections": OPEN_LOOP_CONNECTIONS,
            **at_rate,
            "kept_up": at_rate["throughput_rps"] >= 0.98 * rate,
            "p99_ratio_over_off": round(at_rate["latency_ms"]["p99"] / summary["off"]["p99_ms"], 3),
        },
    }


def overload_cell(port: int, bodies: Path, args: Any) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/v1/models/churn/predict"
    critical = ("X-Priority: critical", "X-Client-ID: pager")
    alone = drive(url, bodies, args.critical_concurrency, args.duration, args.warmup, critical)
    total = args.duration + 2 * args.warmup + 5
    flood_argv = [
        sys.executable, str(LOADGEN), "--url", url, "--bodies-file", str(bodies),
        "--concurrency", str(args.batch_concurrency), "--duration", str(total), "--warmup", "0",
        "--header", "X-Priority: batch", "--header", "X-Client-ID: nightly",
        "--expect-status", "200", "--retry-after-s", "1",
    ]  # fmt: skip
    flood = subprocess.Popen(flood_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(args.warmup)
        loaded = drive(url, bodies, args.critical_concurrency, args.duration, args.warmup, critical)
        busy = metrics(port)["mlcp_serving_busy"]
        out, err = flood.communicate(timeout=total + 120)
    finally:
        if flood.poll() is None:
            flood.kill()
    batch = json.loads(out) if out.strip() else {"error": err[-500:]}
    ratio = loaded["latency_ms"]["p99"] / alone["latency_ms"]["p99"]
    return {
        "critical_concurrency": args.critical_concurrency,
        "batch_concurrency": args.batch_concurrency,
        "critical_alone": alone,
        "critical_under_batch_load": loaded,
        "batch_load": {
            k: batch.get(k) for k in ("throughput_rps", "ok", "errors_by_status", "latency_ms")
        },
        "busy_during_load": busy,
        "critical_p99_ratio_loaded_over_alone": round(ratio, 3),
    }


def cost(ports: dict[str, int], env: dict[str, str]) -> dict[str, Any]:
    time.sleep(4)  # the last windows (--window-s 2) reach the database
    done = subprocess.run(
        [str(BIN / "mlcp"), "deployments", "churn", "--json"],
        env={**env, "MLCP_DEVICE_HOUR_PRICE": str(PRICE)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    deployment = json.loads(done.stdout)[0] if done.returncode == 0 else {"error": done.stderr}
    replicas = {}
    for name, port in ports.items():
        m = metrics(port)
        seconds, predictions = (
            m["mlcp_serving_device_seconds_total"],
            m["mlcp_serving_predictions_total"],
        )
        replicas[f"cache_{name}"] = {
            "device_s": round(seconds, 4),
            "predictions": predictions,
            "device_ms_per_prediction": round(seconds / predictions * 1000, 5)
            if predictions
            else None,
            "cost_per_1k": m["mlcp_serving_cost_per_1k_predictions"],
        }
    return {
        "device_hour_price": PRICE,
        "per_replica_metrics": replicas,
        "mlcp_deployments_champion_cost": (deployment.get("champion") or {}).get("cost"),
    }


def run(args: Any) -> dict[str, Any]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mlcp-traffic-") as tmp:
        home = Path(tmp) / "mlcp"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLCP_")}
        env |= {"MLCP_HOME": str(home), "GX_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1"}
        os.environ.update({"MLCP_HOME": str(home), "GX_ANALYTICS_ENABLED": "false"})
        t0 = time.perf_counter()
        build_home(home, env)
        setup_s = time.perf_counter() - t0
        bodies = Path(tmp) / "zipf.jsonl"
        workload = zipf_bodies(bodies)
        ports = {"off": free_port(), "on": free_port()}
        logs = Path(tmp)
        ready = "http://127.0.0.1:{}/v2/health/ready"
        with running(
            "cache_off", serve_argv(ports["off"]), env, "", ready.format(ports["off"]), logs
        ):
            enable_cache()
            with running(
                "cache_on", serve_argv(ports["on"]), env, "", ready.format(ports["on"]), logs
            ):
                result: dict[str, Any] = {"workload": workload, "setup_s": round(setup_s, 1)}
                if "zipf" in args.cells:
                    result["zipf"] = zipf_cell(ports, bodies, args)
                if "overload" in args.cells:
                    result["overload"] = overload_cell(ports["off"], bodies, args)
                result["cost"] = cost(ports, env)
    result["targets"] = verdicts(result)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["settings"] = {
        "duration_s": args.duration, "warmup_s": args.warmup, "cache_policy": CACHE,
        "serve_argv": serve_argv(0)[1:], "machine_cores": os.cpu_count(),
        "loadavg_at_end": list(os.getloadavg()),
    }  # fmt: skip
    return result


def verdicts(result: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model, z in result.get("zipf", {}).items():
        out[f"zipf_throughput_ratio[{model}]"] = _verdict(
            z["throughput_ratio_on_over_off"], TARGETS["zipf_throughput_ratio_min"], ">="
        )
        out[f"zipf_p99_ratio[{model}]"] = _verdict(
            z["p99_ratio_on_over_off"], TARGETS["zipf_p99_ratio_max"], "<="
        )
        fixed = z["cache_on_at_twice_off_throughput"]
        verdict = _verdict(fixed["p99_ratio_over_off"], TARGETS["zipf_p99_ratio_max"], "<=")
        verdict["met"] = verdict["met"] and fixed["kept_up"]
        verdict["kept_up_with_twice_the_throughput"] = fixed["kept_up"]
        out[f"zipf_p99_ratio_at_twice_the_throughput[{model}]"] = verdict
    if "overload" in result:
        o = result["overload"]
        out["overload_critical_p99_ratio"] = _verdict(
            o["critical_p99_ratio_loaded_over_alone"], TARGETS["overload_p99_ratio_max"], "<="
        )
    return out


def _verdict(observed: float, target: float, how: str) -> dict[str, Any]:
    met = observed >= target if how == ">=" else observed <= target
    return {"observed": observed, "target": f"{how} {target}", "met": met}


def main(args: Any) -> None:
    result = run(args)
    out = args.out or ROOT / "benchmarks/results/serving-traffic.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, verdict in result["targets"].items():
        state = "met" if verdict["met"] else "NOT met"
        print(f"{name}: {verdict['observed']} (target {verdict['target']}) {state}")
    for model, z in result.get("zipf", {}).items():
        print(f"cache hit rate [{model}]: {z['hit_rate']}")
    print(json.dumps(result["cost"], indent=2))
    with contextlib.suppress(KeyError):
        print(f"wrote {out} in {result['wall_s']} s")
