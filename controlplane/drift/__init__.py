"""Drift: live traffic against a version's own reference, judged window after window.

    reference = VersionReference.of(3, version.reference_stats, version.prediction_reference)
    result = analyse_drift(reference, features, predictions, policy.drift, state)
    result.confirmed, result.alarms, result.to_dict()

``stats`` (PSI, Jensen-Shannon, chi-square, Holm), ``calibration`` (a detector's threshold
from its reference, by simulation), ``detector`` (the per-window analysis and its CUSUMs),
``match`` (the earlier version closest to live traffic), ``report`` (``mlcp drift``).
"""

from controlplane.drift.calibration import Calibration, calibrate
from controlplane.drift.detector import DetectorResult, DriftAnalysis, analyse_drift
from controlplane.drift.match import reference_distance, reference_distances
from controlplane.drift.reference import PREDICTION, Bins, Detector, VersionReference

__all__ = [
    "PREDICTION",
    "Bins",
    "Calibration",
    "Detector",
    "DetectorResult",
    "DriftAnalysis",
    "VersionReference",
    "analyse_drift",
    "calibrate",
    "reference_distance",
    "reference_distances",
]
