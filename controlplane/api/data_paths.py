"""``POST /v1/models/{name}/versions/{v}/evaluate`` by path: only files under the server's
data root (``MLCP_API_DATA_ROOT``), and no error that quotes what the file holds.

    candidate, champion = evaluate_on_path(cp, "churn@2", body, actor="token:ci")

Without a data root the route reads no path at all: a client uploads its file
(``PUT /v1/uploads/...``) and asks ``POST /v1/evaluations``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from controlplane.errors import InvalidDataPath
from features.errors import InvalidDataset
from registry.errors import InvalidEvaluationData

if TYPE_CHECKING:
    from controlplane.context import ControlPlane

SUFFIXES = (".parquet", ".csv")
UPLOAD = "upload the file instead: PUT /v1/uploads/<sha256>/<name>, then POST /v1/evaluations"


def resolve_data_path(root: Path | None, given: str) -> Path:
    """``given`` as a file under ``root``; InvalidDataPath for anything else."""
    if root is None:
        raise InvalidDataPath(
            given, f"this server reads no data paths (no MLCP_API_DATA_ROOT); {UPLOAD}"
        )
    if "\0" in given:
        raise InvalidDataPath(given, "a path holds no NUL character")
    base = root.resolve()
    path = (base / given).resolve()  # symlinks followed: a link out of the root is refused
    if not path.is_relative_to(base):
        raise InvalidDataPath(
            given, f"it is outside the server's data root; name a file under it, or {UPLOAD}"
        )
    if path.suffix.lower() not in SUFFIXES:
        raise InvalidDataPath(given, "only .parquet and .csv files are read")
    if not path.is_file():
        raise InvalidDataPath(given, "no such file under the server's data root")
    return path


def evaluate_on_path(cp: ControlPlane, ref: str, body: Any, actor: str) -> tuple[Any, Any]:
    path = resolve_data_path(cp.settings.api_data_root, body.data_path)
    try:
        return cp.evaluations.evaluate(
            ref, path, body.label, body.task, feature_columns=body.features, actor=actor
        )
    except InvalidDataset as exc:
        # The reader's words can quote the file; say only that it is no table.
        raise InvalidDataPath(
            body.data_path, f"it can't be read as {path.suffix[1:]} (check it with `mlcp evaluate`)"
        ) from exc
    except InvalidEvaluationData as exc:
        if "columns" not in exc.why:
            raise
        raise InvalidDataPath(
            body.data_path,
            f"it lacks the label column {body.label!r} or numeric features (its columns are "
            "not listed here; check the file with `mlcp evaluate`)",
        ) from exc
