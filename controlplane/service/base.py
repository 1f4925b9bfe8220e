"""What every ``mlcp`` command asks of the control plane, whichever way it is reached.

`ControlService` is the one interface the commands call: `LocalService` runs it on a
`ControlPlane` (the stores themselves; also what the control API's upload routes call), and
`RemoteService` sends it to the control API with a token. Every method returns plain JSON
data (dicts, lists, strings, numbers), the same in both modes, so a command only parses its
arguments and prints what comes back; ``--json`` prints it as is.

    service: ControlService = LocalService(cp, actor="alice")   # or RemoteService(url, token)
    result = service.promote("churn@3")
    result["outcome"]  # promoted | canary | pending_approval | refused | conflict
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from controlplane.policy import Policy

Progress = Callable[[str], None]
Json = dict[str, Any]
ACCEPTED = ("promoted", "canary", "pending_approval")  # outcomes that exit 0
CANARY_ACTIONS = ("pause", "resume", "abort")


def silent(_: str) -> None:
    pass


@dataclass(frozen=True)
class RegisterFiles:
    """A registration as files on this machine: the model, its input example, the data."""

    name: str
    model: Path  # a torch.save()'d module or a torch.export.save()'d program
    input_example: Path  # .npy, or the numeric columns of .parquet/.csv
    training_data: Path | None = None  # .parquet/.csv, fingerprinted with reference statistics
    label: str | None = None  # the training data's label column, never an input
    feature_service: str | None = None  # its features are the model's inputs
    input_names: tuple[str, ...] = ()  # the inputs in order, without a feature service
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    code_version: str | None = None
    idempotency_key: str | None = None
    description: str | None = None
    model_format: str = "pt2"
    # Unpickle a torch.save'd model (runs its code): --unsafe-allow-pickle, on this machine only.
    unsafe_allow_pickle: bool = False


@dataclass(frozen=True)
class EvaluateFiles:
    """An evaluation of ``ref`` on a labelled file (or entity keys to join a feature service)."""

    ref: str
    data: Path
    label: str
    task: str = "classification"
    features: list[str] | None = None
    feature_service: str | None = None


class ControlService(Protocol):
    """The control plane as commands see it. Every result is JSON data."""

    # -- models --------------------------------------------------------------------------------
    def versions(self, name: str | None = None) -> list[Json]:
        """Every registered version, or one model's (ModelVersion.to_dict() each)."""
        ...

    def version(self, ref: str) -> Json:
        """One version by NAME@VERSION or NAME@ALIAS."""
        ...

    def register(self, request: RegisterFiles, progress: Progress = silent) -> Json:
        """Register a version from files; a retry with the same idempotency key returns it."""
        ...

    def lineage(self, ref: str) -> Json:
        """The lineage graph: ``{"ref", "version", "nodes", "edges"}``."""
        ...

    # -- evaluation and promotion -------------------------------------------------------------
    def evaluate(self, request: EvaluateFiles, progress: Progress = silent) -> Json:
        """``{"candidate": evaluation, "champion": evaluation or None}``."""
        ...

    def promote(self, ref: str, canary_percent: int | None = None, *, canary: bool = False) -> Json:
        """The promotion result (gates, outcome, reason), refused or not; ``canary`` without a
        percent starts at the policy's first canary step."""
        ...

    def approve(self, ref: str, reason: str | None = None) -> Json: ...

    def reject(self, ref: str, reason: str) -> Json: ...

    def gate_runs(self, ref: str) -> list[Json]: ...

    def shadow(self, ref: str, reason: str | None = None) -> Json:
        """Mirror NAME's traffic to ``ref``: ``{"name", "revision", "champion", ..., "shadow"}``."""
        ...

    def unshadow(self, name: str, reason: str | None = None) -> Json: ...

    def windows(self, ref: str, limit: int = 20) -> list[Json]:
        """The serving replicas' report windows of NAME or NAME@VERSION (or alias), newest first."""
        ...

    def drift(self, ref: str, windows: int = 20) -> Json:
        """A version's drift over its last ``windows`` analyses (controlplane.drift.report)."""
        ...

    def report(self, name: str, since: datetime | None = None) -> str:
        """NAME's report page (controlplane.report), charts from ``since`` on: the one
        result that is HTML, not JSON."""
        ...

    # -- deployments and rollouts --------------------------------------------------------------
    def deployments(self, name: str | None = None) -> list[Json]:
        """What is live (every model, or NAME: empty when registered but never deployed)."""
        ...

    def rollback(self, name: str, reason: str, to: int | None = None) -> Json:
        """Roll NAME back (its canary goes, or the previous good version, or ``to``)."""
        ...

    def canary(self, name: str, action: str, reason: str | None = None) -> Json:
        """``action`` is pause, resume or abort; the reason defaults to who did it."""
        ...

    # -- policies -----------------------------------------------------------------------------
    def set_policy(self, name: str, policy: Policy) -> Json: ...

    def policy(self, name: str) -> Json: ...

    # -- audit --------------------------------------------------------------------------------
    def audit(
        self, subject: str | None = None, action: str | None = None, limit: int = 50
    ) -> list[Json]: ...

    def verify_audit(self) -> Json: ...

    # -- features (reads) ---------------------------------------------------------------------
    def features(self) -> Json:
        """``{"views": [...], "services": [...]}``, every version."""
        ...

    def feature(self, ref: str) -> Json:
        """A feature service version, or failing that a view with its materializations."""
        ...

    # -- tokens -------------------------------------------------------------------------------
    def create_token(self, name: str, role: str) -> Json: ...

    def revoke_token(self, token_id: int) -> Json: ...

    def tokens(self, include_revoked: bool = False) -> list[Json]:
        """Every token's id, owner, role and dates (never the token): ``TokenStore.entries``."""
        ...
