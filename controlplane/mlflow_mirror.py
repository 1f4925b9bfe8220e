"""Deployment state mirrored onto MLflow: the ``champion`` and ``challenger`` aliases and each
version's ``mlcp.state`` tag, moved inside the control plane's transaction.

    with MlflowMirror(backend, "churn") as mirror, sessions.begin() as session:
        ...                                     # change rows under the model's lock
        evidence = mirror.drift(expected)       # aliases someone moved outside mlcp
        mirror.publish(champion=3, challenger=None, states={3: "production", 2: "retired"})

The aliases move before the commit; if anything fails after they moved (the commit
itself included: hence the mirror is the *outer* context), they are put back as they were,
so MLflow never names a champion the control plane does not have. Tags are informational
and follow the aliases.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from registry.mlflow_backend import MlflowBackend

CHAMPION, CHALLENGER = "champion", "challenger"
STATE_TAG = "mlcp.state"


class MlflowMirror:
    """Moves a model's aliases (and state tags) and puts the aliases back on failure."""

    def __init__(self, backend: MlflowBackend, name: str) -> None:
        self.backend, self.name = backend, name
        self.before: dict[str, int] = {}
        self.moved = False

    def __enter__(self) -> Self:
        self.before = self.backend.aliases(self.name)
        return self

    def drift(self, expected: Mapping[str, int | None]) -> dict[str, Any] | None:
        """What mlcp's aliases point at if someone moved them outside mlcp (None if not)."""
        owned = {a: v for a, v in self.before.items() if a in (CHAMPION, CHALLENGER)}
        wanted = {a: v for a, v in expected.items() if v is not None}
        return None if owned == wanted else {"found": owned, "expected": wanted}

    def publish(
        self, champion: int | None, challenger: int | None, states: Mapping[int, str]
    ) -> None:
        """Point the aliases at the new champion and challenger; tag the changed versions."""
        self.moved = True
        self.backend.set_alias(self.name, CHAMPION, champion)
        self.backend.set_alias(self.name, CHALLENGER, challenger)
        for version, state in states.items():
            self.backend.set_version_tags(self.name, version, {STATE_TAG: state})

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and self.moved:
            for alias in (CHAMPION, CHALLENGER):
                self.backend.set_alias(self.name, alias, self.before.get(alias))
