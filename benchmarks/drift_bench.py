"""Drift benchmark: mlcp's calibrated sequential detector against Evidently's DataDriftPreset,
on the same windows drawn from the demo model's training distribution.

    make bench    # or: .venv/bin/python benchmarks/drift_bench.py [--windows 1000] [--reps 50]

The demo's churn model is trained on its 4,000 training rows (``controlplane.demo``), whose
statistics are its reference (five features, and its outputs: the prediction reference).
Windows of 500 rows are then drawn from the same generator:

(i)  ``--windows`` windows of unchanged traffic: false alarms (windows where drift is
     confirmed) and false rollbacks (what `decide` does with ``drift.action: rollback``; the
     detectors restart after each, as after a real rollback);
(ii) a mean shift of 0.25, 0.5 and 1 standard deviation in ``monthly_charges``, and a shift
     in ``contract_len``'s category frequencies (1/3 each to 1/2, 1/4, 1/4): windows until
     detection, from the shift's first window, over ``--reps`` repetitions.

Side by side on the same windows: Evidently's DataDriftPreset with its defaults (per-column
tests; dataset drift when at least half the columns drift), with the model's outputs as a
column too, like mlcp's prediction detector. Also shown: what a naive per-window test does
(every column at p < 0.05, no correction, no memory between windows). Results go to
``benchmarks/results/drift.json``. Evidently is a benchmark-only extra
(``pip install -e '.[bench]'``); without it the script runs mlcp alone and says so.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controlplane.controller.decide import History, LiveModel, decide  # noqa: E402
from controlplane.controller.sketches import Sketches  # noqa: E402
from controlplane.controller.traffic import Traffic  # noqa: E402
from controlplane.demo import FEATURES, LABEL, make_churn_data, train  # noqa: E402
from controlplane.drift import Bins, VersionReference  # noqa: E402
from controlplane.policy import Policy  # noqa: E402
from controlplane.references import prediction_reference  # noqa: E402
from features.reference import bin_index, reference_statistics  # noqa: E402

WINDOW_ROWS = 500
POLICY = Policy.from_dict({"drift": {"action": "rollback"}})  # the defaults otherwise
NOW = datetime(2026, 11, 29, tzinfo=UTC)
MAX_DELAY = 50  # windows a repetition waits for a detection before it counts as missed
EVIDENTLY_MAX_DELAY = 10


def windows(
    seed: int, shift: Callable[[pd.DataFrame], pd.DataFrame] | None
) -> Iterator[pd.DataFrame]:
    """Endless windows of ``WINDOW_ROWS`` rows from the demo's generator (``seed`` picks the
    stream), transformed by ``shift``."""
    for i in range(10**9):
        frame = make_churn_data(WINDOW_ROWS, seed=seed * 100_003 + i)[list(FEATURES)]
        yield shift(frame) if shift is not None else frame


def mean_shift(sd: float) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def apply(frame: pd.DataFrame) -> pd.DataFrame:
        # monthly_charges ~ normal(65, 20) clipped to [10, 150]: one sd is 20
        return frame.assign(monthly_charges=frame["monthly_charges"] + np.float32(20 * sd))

    return apply


def contract_mix(frame: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(int(frame["tenure_months"].sum()) % 2**32)
    mix = rng.choice([1.0, 12.0, 24.0], len(frame), p=[0.5, 0.25, 0.25]).astype(np.float32)
    return frame.assign(contract_len=mix)


SCENARIOS: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "monthly_charges +0.25 sd": mean_shift(0.25),
    "monthly_charges +0.5 sd": mean_shift(0.5),
    "monthly_charges +1 sd": mean_shift(1.0),
    "contract_len mix 1/3,1/3,1/3 -> 1/2,1/4,1/4": contract_mix,
}


class Subject:
    """The demo model and its reference, and how a window looks to the controller."""

    def __init__(self) -> None:
        frame = make_churn_data()
        self.net, _, _ = train(frame)
        self.reference_frame = frame[list(FEATURES)]
        stats = reference_statistics(frame, columns=FEATURES)
        x = self.reference_frame.to_numpy(np.float32)
        outputs = prediction_reference(self.net, x, "training", "bench")
        self.reference = VersionReference.of(2, stats, outputs)
        self.model = LiveModel(
            "churn", revision=1, champion=2, fallback=1, references={2: self.reference}
        )

    def predictions(self, frame: pd.DataFrame) -> np.ndarray:
        with torch.inference_mode():
            return self.net(torch.from_numpy(frame.to_numpy(np.float32)))[:, 0].double().numpy()

    def traffic(self, frame: pd.DataFrame, outputs: np.ndarray) -> Traffic:
        features = {}
        for detector in self.reference.detectors:
            values = outputs if detector.name == "prediction" else frame[detector.name].to_numpy()
            counts = np.bincount(
                bin_index(values, detector.edges), minlength=len(detector.edges) - 1
            )
            features[detector.name] = Bins(detector.edges, tuple(int(c) for c in counts))
        predictions = features.pop("prediction")
        return Traffic(requests=len(frame), sketches=Sketches(features, predictions))


class Mlcp:
    """The controller's decision, window after window (detectors restart after a rollback)."""

    def __init__(self, subject: Subject) -> None:
        self.subject = subject
        self.history = History()

    def step(self, frame: pd.DataFrame, outputs: np.ndarray) -> dict[str, Any]:
        [d] = decide(self.subject.model, {2: self.subject.traffic(frame, outputs)}, POLICY,
                     self.history, NOW)  # fmt: skip
        assert d.analysis is not None
        drift = d.analysis.drift
        assert drift is not None
        state = {} if d.action == "rollback" else drift.state()
        self.history = replace(self.history, drift={2: state})
        naive = [r.p_value is not None and r.p_value < 0.05 for r in drift.results]
        holm = [r.p_holm is not None and r.p_holm < 0.05 for r in drift.results]
        return {
            "alarm": drift.confirmed,
            "rollback": d.action == "rollback",
            "drifting": [r.name for r in drift.alarms],
            "naive_any": any(naive),
            "holm_any": any(holm),
        }


class Evidently:
    """Evidently's DataDriftPreset with its defaults, the model's outputs as a column."""

    def __init__(self, subject: Subject) -> None:
        from evidently import Report
        from evidently.presets import DataDriftPreset

        self.report = lambda: Report([DataDriftPreset()])
        ref = subject.reference_frame
        self.reference = ref.assign(prediction=subject.predictions(ref))

    def step(self, frame: pd.DataFrame, outputs: np.ndarray) -> dict[str, Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            snapshot = self.report().run(
                current_data=frame.assign(prediction=outputs), reference_data=self.reference
            )
        drifted, share, columns = 0, 0.0, []
        for metric in snapshot.dict()["metrics"]:
            name, value = metric["metric_name"], metric["value"]
            if name.startswith("DriftedColumnsCount"):
                drifted, share = int(value["count"]), float(value["share"])
            elif name.startswith("ValueDrift("):
                column = name.split("column=")[1].split(",")[0]
                threshold = float(name.split("threshold=")[1].rstrip(")"))
                if float(value) >= threshold:  # distances: drift at or above the threshold
                    columns.append(column)
        return {"dataset_drift": share >= 0.5, "any_column": drifted > 0, "columns": columns}


def unchanged(
    subject: Subject, detectors: dict[str, Any], count: int, stream: int = 1
) -> dict[str, Any]:
    tallies: dict[str, dict[str, int]] = {name: {} for name in detectors}
    columns: dict[str, dict[str, int]] = {name: {} for name in detectors}
    started = {name: 0.0 for name in detectors}
    for frame in _take(windows(stream, None), count):
        outputs = subject.predictions(frame)
        for name, detector in detectors.items():
            t = time.perf_counter()
            result = detector.step(frame, outputs)
            started[name] += time.perf_counter() - t
            for key, value in result.items():
                if isinstance(value, bool):
                    tallies[name][key] = tallies[name].get(key, 0) + int(value)
                else:
                    for column in value:
                        columns[name][column] = columns[name].get(column, 0) + 1
    return {
        name: {
            "windows": count,
            **{f"{k}_windows": v for k, v in tallies[name].items()},
            "columns_flagged": columns[name],
            "seconds_per_window": round(started[name] / count, 4),
        }
        for name in detectors
    }


def delays(subject: Subject, make: Callable[[], Any], shift: Callable, reps: int, cap: int,
           keys: tuple[str, ...]) -> dict[str, Any]:  # fmt: skip
    """Windows until each of ``keys`` first fires, per repetition (None: not within ``cap``)."""
    found: dict[str, list[int | None]] = {k: [] for k in keys}
    for rep in range(reps):
        detector = make()
        first: dict[str, int | None] = dict.fromkeys(keys)
        for index, frame in enumerate(_take(windows(1000 + rep, shift), cap), start=1):
            result = detector.step(frame, subject.predictions(frame))
            for key in keys:
                if first[key] is None and result[key]:
                    first[key] = index
            if all(v is not None for v in first.values()):
                break
        for key in keys:
            found[key].append(first[key])
    return {key: _delay_summary(values, cap) for key, values in found.items()}


def _delay_summary(values: list[int | None], cap: int) -> dict[str, Any]:
    hit = sorted(v for v in values if v is not None)
    return {
        "repetitions": len(values),
        "detected": len(hit),
        "median_windows": statistics.median(hit) if hit else None,
        "mean_windows": round(statistics.mean(hit), 2) if hit else None,
        "max_windows": max(hit) if hit else None,
        "within_10": sum(1 for v in hit if v <= 10),
        "cap_windows": cap,
    }


def _take(it: Iterator[pd.DataFrame], n: int) -> Iterator[pd.DataFrame]:
    for _, item in zip(range(n), it, strict=False):
        yield item


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1000, help="unchanged windows")
    parser.add_argument("--reps", type=int, default=50, help="repetitions per shift (mlcp)")
    parser.add_argument("--evidently-reps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/drift.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    started = time.perf_counter()
    subject = Subject()
    detectors: dict[str, Any] = {"mlcp": Mlcp(subject)}
    try:
        detectors["evidently"] = Evidently(subject)
        import evidently

        evidently_version: str | None = evidently.__version__
    except ImportError:
        evidently_version = None
        print("evidently is not installed (pip install -e '.[bench]'): mlcp alone", file=sys.stderr)

    print(f"unchanged traffic: {args.windows} windows of {WINDOW_ROWS} rows", file=sys.stderr)
    result_unchanged = unchanged(subject, detectors, args.windows)
    # A longer run of mlcp alone on other windows, for a false-alarm rate over more of them.
    long_run = unchanged(subject, {"mlcp": Mlcp(subject)}, 10 * args.windows, stream=2)["mlcp"]

    shifts: dict[str, Any] = {}
    for label, shift in SCENARIOS.items():
        print(f"shift: {label}", file=sys.stderr)
        entry = {"mlcp": delays(subject, lambda: Mlcp(subject), shift, args.reps, MAX_DELAY,
                                ("alarm",))["alarm"]}  # fmt: skip
        if "evidently" in detectors:
            entry["evidently"] = delays(
                subject, lambda: Evidently(subject), shift, args.evidently_reps,
                EVIDENTLY_MAX_DELAY, ("dataset_drift", "any_column"),
            )  # fmt: skip
        shifts[label] = entry

    thresholds = {
        d.name: round(r.threshold, 3)
        for d, r in zip(subject.reference.detectors, _calibrations(subject), strict=True)
    }
    out = {
        "benchmark": "drift",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or "?"},
        "reference": {"rows": len(subject.reference_frame), "features": list(FEATURES),
                      "label": LABEL, "detectors": [d.name for d in subject.reference.detectors]},
        "window_rows": WINDOW_ROWS,
        "policy": POLICY.drift.model_dump(mode="json"),
        "mlcp_thresholds_at_500_rows": thresholds,
        "evidently": evidently_version,
        "unchanged": result_unchanged,
        "unchanged_mlcp_long": long_run,
        "shifts": shifts,
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({"unchanged": result_unchanged, "shifts": shifts}, indent=2))


def _calibrations(subject: Subject) -> list[Any]:
    from controlplane.drift.calibration import calibrate

    drift = POLICY.drift
    per = drift.target_run_length * len(subject.reference.detectors)
    return [calibrate(d.reference, WINDOW_ROWS, drift.k, per, drift.min_psi)
            for d in subject.reference.detectors]  # fmt: skip


if __name__ == "__main__":
    main()
