"""One registration path: the rules every new version meets, whichever door it comes in by.

The CLI (`mlcp models register`), the REST API (``POST /v1/models/{name}/versions``) and the
Python API (``cp.registry.register(...)``) all end in `Registrar.register`, which hands the
request to these rules first:

- a pinned feature service must be registered in Feast, and its features are the model's
  inputs (as many as the model's input columns);
- training rows, when given, are fingerprinted, and the reference statistics are computed
  over exactly the inputs, in input order (join keys, timestamps, the label left out);
- reference statistics given as data are aligned with the inputs the same way, or refused
  with what to change;
- the prediction reference comes from the model's outputs on the training rows (until `mlcp
  evaluate` records one from the evaluation set).

    rules = RegistrationRules(lambda: cp.features)   # what ControlPlane wires in
    request = rules.prepare(request, progress)       # aligned, or InvalidRegistration
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from registry import InvalidRegistration, RegistrationRequest, TrainingData

if TYPE_CHECKING:
    from controlplane.feature_store import ManagedFeatures
    from registry.registration import Progress


class RegistrationRules:
    """The control plane's `registry.RegistrationRules`: Feast and reference statistics.
    ``features`` is called only when a registration pins a feature service."""

    def __init__(self, features: Callable[[], ManagedFeatures]) -> None:
        self.features = features

    def prepare(self, request: RegistrationRequest, progress: Progress) -> RegistrationRequest:
        from controlplane.references import (
            align_reference,
            check_histogram,
            frame_inputs,
            prediction_reference,
        )

        x = request.input_example
        width = int(x.shape[-1]) if x.ndim == 2 else None
        inputs = self._inputs(request, width, progress)
        data, stats = request.training_data, request.reference_stats
        predictions = request.prediction_reference
        frame = request.training_frame
        if frame is not None:
            from features import fingerprint_frame, reference_statistics

            progress("fingerprinting the training data")
            fp = fingerprint_frame(frame)
            source = request.training_source or (data.source if data is not None else None)
            data = TrainingData(fp.sha256, fp.rows, source=source, columns=fp.columns)
            if inputs is None:
                inputs = frame_inputs(frame, request.label, width)
            absent = [c for c in inputs if c not in frame.columns]
            if absent:
                raise InvalidRegistration(
                    "training_data",
                    f"it lacks the model's input columns {absent}; its columns are "
                    f"{[str(c) for c in frame.columns]}",
                )
            progress(f"reference statistics over the {len(inputs)} inputs")
            stats = reference_statistics(frame, columns=inputs)
            if predictions is None:
                progress("the model's outputs on the training rows (prediction reference)")
                x = frame[list(inputs)].to_numpy(dtype="float32")
                predictions = prediction_reference(request.model, x, "training", fp.sha256)
        if stats is not None:
            stats = align_reference(stats, inputs, width)
            inputs = list(stats["inputs"])
        if predictions is not None:
            check_histogram("prediction_reference.output", predictions.get("output"))
        return replace(
            request,
            training_frame=None,
            training_data=data,
            reference_stats=stats,
            prediction_reference=predictions,
            input_names=tuple(inputs or ()),
        )

    def _inputs(
        self, request: RegistrationRequest, width: int | None, progress: Progress
    ) -> list[str] | None:
        """The model's input names: its feature service's features, or ``input_names``."""
        named = list(request.input_names) or None
        if request.feature_service is None:
            if named is not None and width is not None and len(named) != width:
                raise InvalidRegistration(
                    "input_names", f"{len(named)} names for a model with {width} inputs"
                )
            return named
        from features import VersionedRef

        progress(f"checking that {request.feature_service} is registered in Feast")
        service = self.features().repo.service(VersionedRef.parse(request.feature_service))
        names = list(service.feature_names)
        if width is not None and len(names) != width:
            raise InvalidRegistration(
                "feature_service",
                f"{request.feature_service} has {len(names)} features ({', '.join(names)}) but "
                f"the model takes {width} inputs; pin the feature service the model was trained on",
            )
        if named is not None and named != names:
            raise InvalidRegistration(
                "input_names",
                f"{named} are not {request.feature_service}'s features in its order ({names}); "
                "leave input_names out: the feature service names the inputs",
            )
        return names
