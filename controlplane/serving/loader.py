"""Registered versions as the serving tier loads them: `serving.spec.ModelLoader` on the
registry.

    loader = RegistryModelLoader(cp)
    loaded = loader.load("churn", 3)     # LoadedModel(spec=ModelSpec(...), module=...)
    loaded.spec.inputs                   # (TensorSpec("input", "FP32", (-1, 4)),)

The spec comes from the version's lineage: tensors from its MLflow signature, the pinned
feature service, the input column names and the training reference (for drift sketches).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import OperationalError

from controlplane.artifacts import load_verified
from registry.errors import ArtifactTampered, RegistryError, UnsafeModel, first_line
from serving.config import PRIORITIES, CachePolicy, RateLimit, ServingPolicy
from serving.errors import ModelLoadFailed
from serving.spec import LoadedModel, ModelSpec, TensorSpec

if TYPE_CHECKING:
    from controlplane.context import ControlPlane
    from registry import ModelVersion

log = logging.getLogger(__name__)

# numpy dtype names (MLflow's TensorSpec) -> Open Inference Protocol datatypes.
OIP_DATATYPES = {
    "float32": "FP32",
    "float64": "FP64",
    "float16": "FP16",
    "int64": "INT64",
    "int32": "INT32",
    "int16": "INT16",
    "int8": "INT8",
    "uint8": "UINT8",
    "bool": "BOOL",
}


class RegistryModelLoader:
    """Loads registered versions through the registry's MLflow backend.

    ``RegistryModelLoader(cp).load("churn", 3) -> LoadedModel``; every failure is a
    `serving.errors.ModelLoadFailed` that says what to check.
    """

    def __init__(self, cp: ControlPlane, actor: str = "serving") -> None:
        self.cp = cp
        self.actor = actor  # who the audit log says refused a tampered artifact

    def load(self, name: str, version: int) -> LoadedModel:
        ref = f"{name}@{version}"
        try:
            found = self.cp.lineage.get(name, version)
        except OperationalError as exc:
            why = str(exc.orig or exc).strip().splitlines()[0]
            raise ModelLoadFailed(
                ref, f"the control-plane database failed ({why}); check MLCP_DATABASE_URL"
            ) from exc
        if found is None:
            raise ModelLoadFailed(
                ref, f"it is not registered; run `mlcp models list --name {name}` for its versions"
            )
        try:
            serving = serving_policy(self.cp, name)
        except OperationalError as exc:
            why = str(exc.orig or exc).strip().splitlines()[0]
            raise ModelLoadFailed(
                ref, f"the control-plane database failed ({why}); check MLCP_DATABASE_URL"
            ) from exc
        spec = model_spec(found, serving)
        try:
            module = load_verified(
                self.cp.registry.backend, self.cp.sessions, found, actor=self.actor
            )
        except (ArtifactTampered, UnsafeModel) as exc:
            raise ModelLoadFailed(ref, str(exc)) from exc
        except RegistryError as exc:
            raise ModelLoadFailed(
                ref, f"{exc}; check that {found.model_uri} loads with MLflow (`mlcp models show`)"
            ) from exc
        except (OSError, RuntimeError, ValueError) as exc:  # torch deserializing the artifact
            raise ModelLoadFailed(
                ref,
                f"its artifact does not load here ({type(exc).__name__}: {first_line(exc)}); "
                "check the torch version it was registered with (`mlcp lineage`)",
            ) from exc
        return LoadedModel(spec=spec, module=module)


def serving_policy(cp: ControlPlane, name: str) -> ServingPolicy:
    """What the model's current policy says about serving it (defaults without a policy)."""
    from controlplane.errors import NoPolicy

    try:
        rules = cp.policies.current(name).policy.serving
    except NoPolicy:
        return ServingPolicy()
    if rules is None:
        return ServingPolicy()
    cache, limits = rules.cache, rules.limits
    return ServingPolicy(
        cache=CachePolicy(cache.ttl_s, cache.max_entries, bool(cache.shared)) if cache else None,
        rate=RateLimit(limits.rate_per_s, limits.burst) if limits else None,
        priority=PRIORITIES.index(rules.priority),
    )


def model_spec(version: ModelVersion, serving: ServingPolicy | None = None) -> ModelSpec:
    """A version's serving contract, from its lineage alone (no MLflow call), with what its
    model's policy says about serving it."""
    ref = version.ref
    inputs = tensor_specs(ref, version.signature, "inputs")
    outputs = tensor_specs(ref, version.signature, "outputs")
    reference = version.reference_stats
    return ModelSpec(
        name=version.name,
        version=version.version,
        inputs=inputs,
        outputs=outputs,
        feature_service=version.feature_service,
        feature_names=_feature_names(ref, reference, inputs),
        reference=reference,
        prediction_reference=version.prediction_reference,
        serving=serving or ServingPolicy(),
    )


def tensor_specs(ref: str, signature: Mapping[str, Any], side: str) -> tuple[TensorSpec, ...]:
    """The ``inputs`` or ``outputs`` of an MLflow ``ModelSignature.to_dict()`` as OIP tensors."""
    fix = "re-register it with a numpy input example (tensor signature)"
    raw = signature.get(side) if signature else None
    if not raw:
        raise ModelLoadFailed(ref, f"its signature has no {side}; {fix}")
    try:
        entries = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise ModelLoadFailed(ref, f"its signature's {side} are not JSON ({exc}); {fix}") from exc
    specs = []
    for i, entry in enumerate(entries):
        tensor = entry.get("tensor-spec") if entry.get("type") == "tensor" else None
        if tensor is None:
            kind = entry.get("type")
            raise ModelLoadFailed(ref, f"its signature's {side} are {kind!r} columns; {fix}")
        dtype = str(tensor.get("dtype"))
        if dtype not in OIP_DATATYPES:
            known = ", ".join(OIP_DATATYPES)
            raise ModelLoadFailed(
                ref, f"{side} tensor {i} has dtype {dtype!r}, which serving can't take ({known})"
            )
        # mlcp registers one unnamed tensor each way; OIP clients then say "input"/"output".
        default = side[:-1] if len(entries) == 1 else f"{side[:-1]}_{i}"
        name = entry.get("name") or default
        shape = tuple(int(d) for d in tensor.get("shape", ()))
        specs.append(TensorSpec(name=name, datatype=OIP_DATATYPES[dtype], shape=shape))
    return tuple(specs)


def _feature_names(
    ref: str, reference: Mapping[str, Any] | None, inputs: tuple[TensorSpec, ...]
) -> tuple[str, ...]:
    # Registered references name the inputs in order; older ones only key their features.
    names = tuple((reference or {}).get("inputs") or (reference or {}).get("features") or ())
    width = inputs[0].shape[-1] if len(inputs) == 1 and len(inputs[0].shape) == 2 else None
    if names and width not in (None, -1) and len(names) != width:
        # Naming columns wrongly would mislabel every drift sketch: serve them unnamed instead.
        log.warning(
            "%s: its reference statistics name %d columns, its input has %d; serving the "
            "columns unnamed (entity requests and per-feature drift are off for it)",
            ref,
            len(names),
            width,
        )
        return ()
    return names
