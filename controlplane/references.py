"""A version's references as the control plane records them: the statistics of its inputs
(aligned with the model: exactly its input features, named, in input order) and of its
outputs (the prediction reference).

    inputs = frame_inputs(frame, label="churned", width=5)    # or a feature service's names
    stats = align_reference(reference_statistics(frame, columns=inputs), inputs, width=5)
    outputs = prediction_reference(model, frame[inputs].to_numpy(), "training", fingerprint)

Join keys, timestamps and the label are never inputs. A reference that can't be aligned with
the model's inputs is refused with `InvalidRegistration`, saying what to change.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from registry import InvalidRegistration
from registry.evaluation import fixed_batch_size, forward_rows

if TYPE_CHECKING:
    import pandas as pd
    import torch

# Enough rows for the deciles of a model's outputs to be stable to about 1%.
PREDICTION_ROWS = 50_000
FIX_INPUTS = (
    "name the model's inputs: --feature-service NAME@VERSION (its features are the inputs) or "
    "--features a,b,c (Python: feature_service= or input_names=)"
)


def frame_inputs(frame: pd.DataFrame, label: str | None, width: int | None) -> list[str]:
    """The input columns of a training frame that names them nowhere else: its numeric
    columns but the label, if there are exactly as many as the model has inputs."""
    import pandas as pd

    candidates = [
        str(c)
        for c in frame.columns
        if c != label
        and pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
    ]
    if width is None or len(candidates) == width:
        return candidates
    what = f"the training data's numeric columns but the label ({_names(candidates)})"
    return _refuse_width("training_data", what, len(candidates), width)


def align_reference(
    stats: Mapping[str, Any], inputs: Sequence[str] | None, width: int | None
) -> dict[str, Any]:
    """``stats`` reduced to the model's inputs, in their order (join keys, timestamps and
    labels it also covers are dropped); refused when it lacks an input, or, with no input
    names known, when its column count is not the model's."""
    features = stats.get("features")
    if not isinstance(features, Mapping) or not features:
        raise InvalidRegistration(
            "reference_stats", "it has no per-feature statistics ({'features': {name: ...}})"
        )
    if inputs is None:
        names = [str(n) for n in (stats.get("inputs") or features)]
        if width is not None and len(names) != width:
            _refuse_width("reference_stats", f"the reference's columns ({_names(names)})",
                          len(names), width)  # fmt: skip
    else:
        names = list(inputs)
        missing = [n for n in names if n not in features]
        if missing:
            raise InvalidRegistration(
                "reference_stats",
                f"it has no statistics for the model's inputs {missing} (it covers "
                f"{_names(list(features))}); compute it over exactly the inputs: "
                f"features.reference_statistics(frame, columns={names})",
            )
    aligned = {n: features[n] for n in names}
    for name, entry in aligned.items():
        check_histogram(f"reference_stats.features.{name}", entry)
    return {
        **{k: v for k, v in stats.items() if k not in ("features", "inputs")},
        "inputs": names,
        "features": aligned,
    }


def check_histogram(field: str, entry: Any) -> None:
    """Refuse a feature (or output) entry whose histogram the controller could not use:
    edges must be increasing numbers, counts one fewer non-negative integers."""
    if not isinstance(entry, Mapping):
        raise InvalidRegistration(field, "is not a mapping of statistics")
    histogram = entry.get("histogram")
    if histogram is None:
        return
    edges = histogram.get("edges") if isinstance(histogram, Mapping) else None
    counts = histogram.get("counts") if isinstance(histogram, Mapping) else None
    numbers = isinstance(edges, list) and all(
        isinstance(e, int | float) and not isinstance(e, bool) and np.isfinite(e) for e in edges
    )
    whole = isinstance(counts, list) and all(
        isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts
    )
    if not (numbers and whole and edges and counts and len(counts) == len(edges) - 1):
        raise InvalidRegistration(
            f"{field}.histogram",
            "needs 'edges' (finite numbers) and 'counts' (one fewer non-negative integers), "
            "as features.reference_statistics computes them",
        )
    assert isinstance(edges, list)
    if any(b < a for a, b in itertools.pairwise(edges)):
        raise InvalidRegistration(f"{field}.histogram", "its edges must not decrease")


def prediction_reference(
    model: torch.nn.Module, inputs: np.ndarray, source: str, fingerprint: str
) -> dict[str, Any]:
    """The distribution of ``model``'s first raw output (what serving sketches) over
    ``inputs`` (at most ``PREDICTION_ROWS`` rows, spread evenly)."""
    import torch

    x = np.ascontiguousarray(inputs, dtype=np.float32)
    if len(x) > PREDICTION_ROWS:
        x = x[np.linspace(0, len(x) - 1, PREDICTION_ROWS).astype(np.int64)]
    try:
        with torch.inference_mode():
            out = forward_rows(model, torch.from_numpy(x), fixed_batch_size(model))
    except Exception as exc:
        raise InvalidRegistration(
            "training_data",
            f"the model fails on the {source} rows' inputs ({type(exc).__name__}: {exc}); "
            "check that the inputs are the model's, in its order",
        ) from exc
    return output_reference(out.reshape(len(x), -1)[:, 0].double().numpy(), source, fingerprint)


def output_reference(outputs: np.ndarray, source: str, fingerprint: str) -> dict[str, Any]:
    """A prediction reference from outputs already computed (an evaluation's)."""
    from features import numeric_statistics

    return {
        "source": source,
        "dataset_fingerprint": fingerprint,
        "rows": len(outputs),
        "output": numeric_statistics(np.asarray(outputs, dtype=np.float64)),
    }


def _refuse_width(field: str, what: str, found: int, width: int) -> Any:
    raise InvalidRegistration(
        field, f"{what}: {found} columns, but the model takes {width} inputs; {FIX_INPUTS}"
    )


def _names(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
