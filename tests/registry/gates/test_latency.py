"""The latency gate on a fake probe, and one real forward probe on a tiny model."""

from __future__ import annotations

import pytest
import torch

from registry.gates import GateContext, LatencyBudgetGate, make_forward_probe
from tests.registry.gates.conftest import version


def fake_probe(ms_by_batch: dict[int, list[float]]):
    calls: list[tuple[int, int]] = []

    def probe(batch_size: int, iterations: int) -> list[float]:
        calls.append((batch_size, iterations))
        return [ms / 1000 for ms in ms_by_batch[batch_size]]

    return probe, calls


def ctx(probe) -> GateContext:
    return GateContext(candidate=version(), latency_probe=probe, device="cpu")


def test_within_budget_passes_with_percentiles_per_batch_size() -> None:
    probe, calls = fake_probe({1: [float(i) for i in range(1, 101)], 32: [5.0] * 20})

    result = LatencyBudgetGate([1, 32], p99_ms=100, iterations=20).check(ctx(probe))

    assert calls == [(1, 20), (32, 20)]
    assert (result.gate, result.passed, result.threshold) == ("latency", True, "p99 <= 100 ms")
    assert result.observed == 99.01
    assert result.details == {
        "batch_sizes": [
            {"batch_size": 1, "p50_ms": 50.5, "p99_ms": 99.01, "iterations": 100},
            {"batch_size": 32, "p50_ms": 5.0, "p99_ms": 5.0, "iterations": 20},
        ],
        "device": "cpu",
    }


def test_p99_over_budget_on_any_batch_size_fails() -> None:
    probe, _ = fake_probe({1: [2.0] * 10, 32: [2.0] * 9 + [80.0]})

    result = LatencyBudgetGate([1, 32], p99_ms=50).check(ctx(probe))

    assert result.blocking
    assert result.observed == pytest.approx(72.98)
    assert "batch 32: p99 72.980 ms > 50 ms" in result.details["reason"]


def test_p50_over_budget_fails() -> None:
    probe, _ = fake_probe({8: [30.0] * 10})

    result = LatencyBudgetGate([8], p99_ms=50, p50_ms=20).check(ctx(probe))

    assert result.blocking
    assert result.threshold == "p99 <= 50 ms, p50 <= 20 ms"
    assert result.details["reason"] == "batch 8: p50 30.000 ms > 20 ms"


def test_missing_probe_fails() -> None:
    result = LatencyBudgetGate([1], p99_ms=50).check(GateContext(candidate=version()))

    assert result.blocking
    assert "no latency probe" in result.details["reason"]


def test_bad_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="batch sizes must be >= 1"):
        LatencyBudgetGate([0], p99_ms=50)


def test_forward_probe_times_each_iteration_of_a_real_model() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    probe = make_forward_probe(net, (4,), warmup=2)

    times = probe(16, 7)
    result = LatencyBudgetGate([1, 16], p99_ms=1e9, iterations=5).check(ctx(probe))

    assert len(times) == 7
    assert all(t > 0 for t in times)
    assert not net.training
    assert [b["iterations"] for b in result.details["batch_sizes"]] == [5, 5]
    assert isinstance(result.observed, float)


def test_forward_probe_refuses_an_unknown_dtype() -> None:
    with pytest.raises(ValueError, match="unknown torch dtype 'float33'"):
        make_forward_probe(torch.nn.Linear(4, 1), (4,), dtype="float33")


def test_probe_runs_an_exported_program_which_refuses_eval() -> None:
    import torch

    from registry.gates import make_forward_probe

    net = torch.nn.Sequential(torch.nn.Linear(3, 2)).eval()
    x = torch.ones(4, 3)
    exported = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    probe = make_forward_probe(exported.module(), (3,))
    assert len(probe(2, 5)) == 5
