"""A registered version's model, loaded for serving and the gates: verified first, and the
refusal audited.

    model = load_verified(registrar.backend, sessions, version, actor="ci")

The registry's backend refuses a model whose stored files no longer hash to the sha256
recorded at registration (`registry.errors.ArtifactTampered`) or whose pt2 archive would
run code (`registry.errors.UnsafeModel`); each refusal is an audit row,
``model.artifact_refused``, naming what was expected and what was found.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from controlplane import audit
from registry.errors import ArtifactTampered, UnsafeModel

if TYPE_CHECKING:
    import torch
    from sqlalchemy.orm import Session, sessionmaker

    from registry.lineage import ModelVersion
    from registry.mlflow_backend import MlflowBackend

log = logging.getLogger(__name__)
REFUSED = "model.artifact_refused"


def load_verified(
    backend: MlflowBackend,
    sessions: sessionmaker[Session],
    version: ModelVersion,
    actor: str,
) -> torch.nn.Module:
    """``backend.load_version(version)``; a refused artifact is audited, then re-raised."""
    try:
        return backend.load_version(version)
    except (ArtifactTampered, UnsafeModel) as exc:
        evidence: dict[str, str] = {"recorded_sha256": version.artifact_sha256}
        if isinstance(exc, ArtifactTampered):
            evidence["stored_sha256"] = exc.got
        try:
            with sessions.begin() as session:
                audit.append(
                    session,
                    actor=actor,
                    action=REFUSED,
                    subject=version.ref,
                    reason=str(exc),
                    evidence=evidence,
                )
        except SQLAlchemyError:  # the refusal stands without its audit row; say so
            log.exception("could not audit the refused artifact of %s", version.ref)
        raise
