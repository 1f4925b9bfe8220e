"""Two promotions of different versions of one model, at the same moment, on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controlplane import audit
from controlplane.context import ControlPlane
from controlplane.policy import Policy
from controlplane.promotion import PromotionResult
from controlplane.settings import Settings
from features import reference_statistics
from registry import RegistrationRequest
from tests.conftest import make_net

ROUNDS = 20


@pytest.fixture
def pg_cp(pg_url: str, pg_mlflow_uri: str, tmp_path: Path) -> Iterator[ControlPlane]:
    settings = Settings(
        home=tmp_path / ".mlcp",
        database_url=pg_url,
        mlflow_tracking_uri=pg_mlflow_uri,
        artifact_root=(tmp_path / "artifacts").as_uri(),
    )
    with ControlPlane(settings) as cp:
        yield cp


def test_exactly_one_of_two_simultaneous_promotions_wins(pg_cp: ControlPlane, model_name) -> None:
    import pandas as pd

    x = np.random.default_rng(0).random((8, 4), dtype=np.float32)
    stats = reference_statistics(pd.DataFrame(x, columns=list("abcd")))
    for seed in (1, 2, 3):  # three versions: each round, the two that aren't champion race
        pg_cp.registry.register(
            RegistrationRequest(
                name=model_name, model=make_net(seed), input_example=x, reference_stats=stats
            )
        )
    pg_cp.policies.set(model_name, Policy.from_yaml("gates: {drift_reference: true}"), "admin")
    service = pg_cp.promotions
    real_context = service._context

    for _ in range(ROUNDS):
        champion = service.snapshot(model_name).champion
        racers = [v for v in (1, 2, 3) if v != champion][:2]
        both_snapshotted = threading.Barrier(2, timeout=60)

        def after_snapshot(*args: Any, barrier: threading.Barrier = both_snapshotted) -> Any:
            barrier.wait()  # both have read the same revision before either moves
            return real_context(*args)

        service._context = after_snapshot  # type: ignore[method-assign]
        results: dict[int, PromotionResult | BaseException] = {}

        def promote(version: int, out: dict[int, Any] = results) -> None:
            try:
                out[version] = service.promote(f"{model_name}@{version}", f"ci-{version}")
            except BaseException as exc:
                out[version] = exc

        threads = [threading.Thread(target=promote, args=(v,)) for v in racers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        outcomes = sorted(
            r.outcome if isinstance(r, PromotionResult) else repr(r) for r in results.values()
        )
        assert outcomes == ["conflict", "promoted"], results
        loser = next(r for r in results.values() if r.outcome == "conflict")  # type: ignore[union-attr]
        assert "changed while this ran" in loser.reason  # type: ignore[union-attr]
        winner = next(v for v, r in results.items() if r.outcome == "promoted")  # type: ignore[union-attr]
        assert service.snapshot(model_name).champion == winner
        assert pg_cp.registry.backend.aliases(model_name) == {"champion": winner}

    service._context = real_context  # type: ignore[method-assign]
    with pg_cp.sessions() as session:
        assert audit.verify(session).ok
        promotions = audit.entries(session, subject=f"{model_name}@*", action="model.promote")
    assert len(promotions) == ROUNDS
