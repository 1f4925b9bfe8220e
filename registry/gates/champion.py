"""The champion gate: the candidate must not be worse than the serving champion.

Both are judged on the same rows (equal dataset fingerprints); comparing numbers from
different datasets would say nothing about which model is better.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from registry.gates.base import GateContext, GateResult, evaluate_hint


class ChampionComparisonGate:
    """Fails when the candidate's ``metric`` drops below the champion's by more than allowed.

        ChampionComparisonGate("auc", max_drop=0.01)
        ChampionComparisonGate("rmse", direction="lower", max_relative_drop=0.05)

    With neither ``max_drop`` nor ``max_relative_drop`` the candidate must be at least as good.
    The first model of a name has no champion and passes on its floors alone.
    """

    def __init__(
        self,
        metric: str,
        direction: Literal["higher", "lower"] = "higher",
        max_drop: float | None = None,
        max_relative_drop: float | None = None,
    ) -> None:
        if direction not in ("higher", "lower"):
            raise ValueError(f"champion gate {metric!r}: direction must be 'higher' or 'lower'")
        for label, bound in (("max_drop", max_drop), ("max_relative_drop", max_relative_drop)):
            if bound is not None and bound < 0:
                raise ValueError(f"champion gate {metric!r}: {label} must be >= 0, not {bound}")
        self.metric = metric
        self.direction = direction
        self.max_drop = max_drop
        self.max_relative_drop = max_relative_drop
        self.name = f"champion:{metric}"

    @property
    def threshold(self) -> str:
        parts = []
        if self.max_drop is not None:
            parts.append(f"drop <= {self.max_drop}")
        if self.max_relative_drop is not None:
            parts.append(f"relative drop <= {self.max_relative_drop}")
        return " and ".join(parts) or "drop <= 0"

    def check(self, ctx: GateContext) -> GateResult:
        cand_eval = ctx.candidate_eval
        if cand_eval is None or self.metric not in cand_eval.metrics:
            why = (
                "the candidate has no evaluation"
                if cand_eval is None
                else f"the candidate's evaluation has no metric {self.metric!r}"
            )
            return self._fail(f"{why}; run {evaluate_hint(ctx.candidate.ref)} first")
        candidate = float(cand_eval.metrics[self.metric])

        champion = ctx.champion
        if champion is None:
            return GateResult(
                gate=self.name,
                passed=True,
                observed=candidate,
                threshold=self.threshold,
                details={"first_model": True, "note": "no champion yet: passing on floors alone"},
            )
        if (champion.name, champion.version) == (ctx.candidate.name, ctx.candidate.version):
            return GateResult(
                gate=self.name,
                passed=True,
                observed=0.0,
                threshold=self.threshold,
                details={
                    "note": f"the candidate {champion.ref} is the champion: nothing to compare"
                },
            )

        # `mlcp evaluate CANDIDATE` scores the champion on the same rows too.
        fix = (
            "evaluate both on the same data: "
            f"{evaluate_hint(ctx.candidate.ref, cand_eval)} with the data the candidate was "
            "evaluated on (it scores the champion on the same rows)"
        )
        champ_eval = ctx.champion_eval
        if champ_eval is None:
            return self._fail(f"the champion {champion.ref} has no evaluation; {fix}")
        if champ_eval.dataset_fingerprint != cand_eval.dataset_fingerprint:
            return self._fail(
                f"the champion {champion.ref} was evaluated on dataset "
                f"{champ_eval.dataset_fingerprint[:12]}, the candidate on "
                f"{cand_eval.dataset_fingerprint[:12]}; {fix}",
                candidate_dataset=cand_eval.dataset_fingerprint,
                champion_dataset=champ_eval.dataset_fingerprint,
            )
        if self.metric not in champ_eval.metrics:
            return self._fail(f"the champion's evaluation has no metric {self.metric!r}; {fix}")
        best = float(champ_eval.metrics[self.metric])

        drop = best - candidate if self.direction == "higher" else candidate - best
        # A zero champion has no scale: any real drop from it counts as unbounded (None).
        relative = drop / abs(best) if best != 0 else (0.0 if drop <= 0 else None)
        reasons = []
        if self.max_drop is not None and _exceeds(drop, self.max_drop):
            reasons.append(f"drop {drop:.6g} exceeds max_drop {self.max_drop}")
        if self.max_relative_drop is not None and (
            relative is None or _exceeds(relative, self.max_relative_drop)
        ):
            shown = "unbounded (champion is 0)" if relative is None else f"{relative:.6g}"
            reasons.append(
                f"relative drop {shown} exceeds max_relative_drop {self.max_relative_drop}"
            )
        if self.max_drop is None and self.max_relative_drop is None and drop > 0:
            reasons.append(f"the candidate is worse than the champion by {drop:.6g}")
        details: dict[str, Any] = {
            "candidate": candidate,
            "champion": best,
            "champion_version": champion.version,
            "direction": self.direction,
            "drop": drop,
            "relative_drop": relative,
            "dataset_fingerprint": cand_eval.dataset_fingerprint,
        }
        if reasons:
            details["reason"] = "; ".join(reasons)
        return GateResult(
            gate=self.name,
            passed=not reasons,
            observed=drop,
            threshold=self.threshold,
            details=details,
        )

    def _fail(self, reason: str, **extra: Any) -> GateResult:
        return GateResult.cannot_judge(self.name, self.threshold, reason, **extra)


def _exceeds(value: float, limit: float) -> bool:
    # 0.8 - 0.79 is 0.010000000000000009: a drop exactly at the allowance must not fail.
    return value > limit and not math.isclose(value, limit, rel_tol=1e-9, abs_tol=1e-12)
