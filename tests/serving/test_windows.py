"""Report windows: counts, latency bins, and sketches binned on the training reference."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import torch

from serving.windows import ERROR, LATENCY_EDGES_S, OK, REJECTED, WindowRecorder, cost_per_1k
from tests.serving.conftest import spec_for

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def reference() -> dict[str, object]:
    edges = [0.0, 1.0, 2.0, 3.0]
    return {"rows": 10, "features": {f"f{i}": {"histogram": {"edges": edges}} for i in range(5)}}


def test_window_bins_features_on_the_reference_edges() -> None:
    spec = replace(spec_for("churn", 1, service="churn_features@1"), reference=reference())
    recorder = WindowRecorder(spec, "champion", "r1", T0)
    x = torch.tensor([[0.5] * 5, [1.5] * 5, [2.5] * 5, [9.0] * 5, [float("nan")] * 5])
    recorder.record_batch(x, torch.tensor([[0.1], [0.2], [0.3], [0.9], [0.5]]))
    recorder.record(OK, 0.003)
    recorder.record(ERROR, 20.0)
    recorder.record(REJECTED, 0.0)
    window = recorder.cut(T0 + timedelta(minutes=1))
    f0 = window.features["f0"]
    assert f0.edges == (0.0, 1.0, 2.0, 3.0)
    assert f0.counts == (1, 1, 2)  # 9.0 lands in the last bin
    assert (f0.count, f0.nulls, f0.minimum, f0.maximum) == (4, 1, 0.5, 9.0)
    assert window.predictions is not None
    assert window.predictions.count == 5
    assert (window.requests, window.errors, window.rejected) == (3, 1, 1)
    assert window.latency_counts[LATENCY_EDGES_S.index(0.003)] == 1
    assert window.latency_counts[-1] == 1
    assert window.to_dict()["features"]["f0"]["counts"] == [1, 1, 2]


def test_cut_starts_a_new_window() -> None:
    recorder = WindowRecorder(spec_for("churn", 1), "champion", "r1", T0)
    recorder.record(OK, 0.01)
    first = recorder.cut(T0 + timedelta(seconds=60))
    second = recorder.cut(T0 + timedelta(seconds=120))
    assert first.requests == 1
    assert second.requests == 0
    assert second.started_at == first.ended_at


def test_sample_stays_bounded_and_spread() -> None:
    recorder = WindowRecorder(spec_for("churn", 1), "champion", "r1", T0, max_rows=100)
    for i in range(1000):
        recorder.record_batch(torch.full((10, 5), float(i)), torch.zeros(10, 1))
    window = recorder.cut(T0)
    sketch = window.features["input_0"]
    assert sketch.count <= 100
    assert sketch.minimum == 0.0
    assert sketch.maximum is not None
    assert sketch.maximum > 800


def test_windows_carry_device_time_and_predictions_for_cost() -> None:
    recorder = WindowRecorder(spec_for("m", 1), "champion", "host:1", T0)
    recorder.record_compute(0.004, rows=8)
    recorder.record_compute(0.002, rows=4)
    recorder.record_cached(rows=4)
    window = recorder.cut(T0 + timedelta(seconds=60))
    assert (window.compute_s, window.answered, window.cached) == (0.006, 16, 4)
    assert window.to_dict()["answered"] == 16
    # 0.375 device-ms a prediction at 3.60 an hour: 1,000 cost 0.000375.
    assert cost_per_1k(window.compute_s, window.answered, 3.6) == pytest.approx(0.000375)
    assert cost_per_1k(0.0, 0, 3.6) is None
    assert recorder.cut(T0 + timedelta(seconds=120)).compute_s == 0.0
