"""One analysis window's drift verdict for one version: statistics per feature and for
predictions, each fed to its sequential detector.

    result = analyse_drift(reference, sketches, policy.drift, state={"tenure_months": 1.2})
    result.confirmed          # a detector crossed its threshold: drift is confirmed
    result.state()            # what the next window starts from (persisted with the analysis)

Per detector and window: PSI and Jensen-Shannon distance (effect sizes), Pearson's
chi-square test of the window's bins against the reference's (its p-value, also Holm-adjusted
over the version's detectors), and the statistic as a normal score ``z``. The detector is a
CUSUM: ``s = max(0, s + z - k)``, except that a window whose effect is under the floor
(``min_psi``, ``min_js``) can only lower ``s``: a huge window with a trivial shift gives a
tiny p-value but never an alarm. It alarms at ``s >= h``, with ``h`` calibrated from the
reference (``controlplane.drift.calibration``) so that the whole version (all its detectors
together: each gets ``target_run_length`` times their number) sees one false alarm per
``target_run_length`` windows on average when its traffic is like its reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from controlplane.drift.calibration import calibrate
from controlplane.drift.reference import PREDICTION, Bins, Detector, VersionReference
from controlplane.drift.stats import chi2_two_sample, holm, js_distance, psi, wilson_hilferty

if TYPE_CHECKING:
    from controlplane.policy import Drift

Status = Literal["ok", "drift", "too_few_rows", "not_sketched"]


@dataclass(frozen=True)
class DetectorResult:
    """One detector's window: its statistics, its CUSUM before and after, its verdict."""

    name: str
    status: Status
    rows: int
    cusum: float  # after this window (unchanged when it was not judged)
    threshold: float | None = None
    psi: float | None = None
    js: float | None = None
    p_value: float | None = None
    p_holm: float | None = None
    z: float | None = None
    effect: bool = False  # the window's effect reached the floor
    note: str | None = None

    @property
    def alarm(self) -> bool:
        return self.status == "drift"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "status": self.status, "rows": self.rows}
        for key in ("psi", "js", "z"):
            value = getattr(self, key)
            out[key] = None if value is None else round(value, 5)
        for key in ("p_value", "p_holm"):
            value = getattr(self, key)
            out[key] = None if value is None else float(f"{value:.3g}")
        out["effect"] = self.effect
        out["cusum"] = round(self.cusum, 4)
        out["threshold"] = None if self.threshold is None else round(self.threshold, 4)
        if self.note:
            out["note"] = self.note
        return out

    def describe(self) -> str:
        stats = f"PSI {self.psi:.3f}, JS {self.js:.3f}" if self.psi is not None else "no stats"
        p = f", p {self.p_value:.2g}" if self.p_value is not None else ""
        h = f" >= {self.threshold:.2f}" if self.threshold is not None else ""
        return f"{self.name} ({stats}{p}; CUSUM {self.cusum:.2f}{h})"


@dataclass(frozen=True)
class DriftAnalysis:
    """A version's drift over one analysis window."""

    version: int
    results: tuple[DetectorResult, ...]
    target_run_length: int
    min_psi: float
    min_js: float | None
    k: float

    @property
    def alarms(self) -> tuple[DetectorResult, ...]:
        return tuple(r for r in self.results if r.alarm)

    @property
    def confirmed(self) -> bool:
        return bool(self.alarms)

    @property
    def judged(self) -> bool:
        return any(r.status in ("ok", "drift") for r in self.results)

    def state(self) -> dict[str, float]:
        return {r.name: r.cusum for r in self.results}

    def describe(self) -> str:
        if self.alarms:
            return "drift confirmed in " + "; ".join(r.describe() for r in self.alarms)
        return "no drift confirmed" if self.judged else "too few rows to judge drift"

    def thresholds(self) -> str:
        floor = f"PSI >= {self.min_psi:g}" + (f", JS >= {self.min_js:g}" if self.min_js else "")
        return (
            f"CUSUM over windows under its threshold (one false alarm per "
            f"{self.target_run_length} windows; effect floor {floor})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "confirmed": self.confirmed,
            "drifting": [r.name for r in self.alarms],
            "detectors": [r.to_dict() for r in self.results],
            "target_run_length": self.target_run_length,
            "min_psi": self.min_psi,
            "min_js": self.min_js,
            "k": self.k,
            "state": self.state(),
        }


def analyse_drift(
    reference: VersionReference,
    features: Mapping[str, Bins],
    predictions: Bins | None,
    policy: Drift,
    state: Mapping[str, float],
) -> DriftAnalysis:
    """Judge one window (a version's sketches merged across replicas) against ``reference``,
    every detector starting from ``state`` (its CUSUM after the previous window)."""
    detectors = [d for d in reference.detectors if d.name != PREDICTION or policy.predictions]
    per_detector = policy.target_run_length * max(1, len(detectors))
    raw: list[tuple[Detector, tuple[int, ...] | None, int]] = []
    for detector in detectors:
        bins = predictions if detector.name == PREDICTION else features.get(detector.name)
        counts = detector.window_counts(bins) if bins is not None else None
        raw.append((detector, counts, bins.rows if bins is not None else 0))
    tests = {
        d.name: chi2_two_sample(c, d.reference)
        for d, c, rows in raw
        if c is not None and rows >= policy.min_rows
    }
    adjusted = dict(zip(tests, holm([t[2] for t in tests.values()]), strict=True))
    results = []
    for detector, counts, rows in raw:
        before = float(state.get(detector.name, 0.0))
        if counts is None:
            note = (
                "no sketch in this window"
                if rows == 0
                else "the replicas sketch on other edges than this reference's (they load a "
                "version's reference when they load the version: restart them to pick up a "
                "new one)"
            )
            results.append(DetectorResult(detector.name, "not_sketched", rows, before, note=note))
            continue
        if rows < policy.min_rows:
            results.append(
                DetectorResult(
                    detector.name,
                    "too_few_rows",
                    rows,
                    before,
                    note=f"under drift.min_rows ({policy.min_rows})",
                )
            )
            continue
        statistic, df, p_value = tests[detector.name]
        z = wilson_hilferty(statistic, df)
        effect_psi, effect_js = (
            psi(counts, detector.reference),
            js_distance(counts, detector.reference),
        )
        effect = effect_psi >= policy.min_psi and (
            policy.min_js is None or effect_js >= policy.min_js
        )
        step = z - policy.k if effect else min(0.0, z - policy.k)
        after = max(0.0, before + step)
        threshold = calibrate(
            detector.reference, rows, policy.k, per_detector, policy.min_psi, policy.min_js or 0.0
        ).threshold
        results.append(
            DetectorResult(
                detector.name,
                "drift" if after >= threshold else "ok",
                rows,
                after,
                threshold,
                effect_psi,
                effect_js,
                p_value,
                adjusted[detector.name],
                z,
                effect,
            )
        )
    return DriftAnalysis(
        reference.version,
        tuple(results),
        policy.target_run_length,
        policy.min_psi,
        policy.min_js,
        policy.k,
    )
