"""One served version: its runtime, its batcher, its window, and how requests become a batch.

    served = ServedVersion(loaded, runtime, "champion", config, lookup=lookup, ...)
    served.start()
    outputs = await served.submit(TensorRows(x), rows=4, deadline=d, budget_ms=500)
    outputs = await served.submit(EntityRows([{"customer_id": 7}]), 1, d, 500)
    await served.drain()            # answers what is queued, takes nothing new

A request carries either a tensor (`TensorRows`, from the Open Inference Protocol) or entity
keys (`EntityRows`); a batch holding entity keys fetches all of their features in one lookup
on a worker thread, so that read overlaps the previous batch's compute. A lookup that fails
fails only the entity requests that needed it; tensor requests in the batch are answered.
Features served stale are noted on their request (``EntityRows.stale``) for its answer.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import torch

from serving.batching import BatchMetrics, DynamicBatcher, PreparedBatch
from serving.cache import CacheMetrics, PredictionCache, entity_key
from serving.config import NORMAL, ServerConfig
from serving.errors import (
    FeaturesUnavailable,
    InvalidInput,
    ModelFailed,
    ServingError,
    UnknownEntities,
)
from serving.runtime import ModelRuntime
from serving.shared_cache import SharedCache
from serving.spec import FeatureLookup, LoadedModel, LookupRow, ModelSpec, StaleFeatures
from serving.windows import WindowRecorder


@dataclass(frozen=True, slots=True)
class TensorRows:
    """A request's input tensor, already validated against the spec."""

    tensor: torch.Tensor


@dataclass(slots=True, eq=False)
class EntityRows:
    """A request's entity keys; the batch looks their features up. ``stale[ref]`` maps the
    index of each entity whose features version ``ref`` got stale to their age in seconds
    (written by the batch's prepare step before the request's answer is set)."""

    entities: list[dict[str, Any]]
    stale: dict[str, dict[int, float]] = field(default_factory=dict)


Payload = TensorRows | EntityRows


class FeatureAssembler:
    """Turns feature rows from the lookup into the model's input tensor, column by column in
    ``spec.feature_names`` order; unknown entities and disallowed nulls fail their request."""

    def __init__(self, spec: ModelSpec, lookup: FeatureLookup | None, dtype: torch.dtype) -> None:
        self.spec, self.lookup, self.dtype = spec, lookup, dtype

    def prepare(self, payloads: list[Payload]) -> PreparedBatch:
        entities = [e for p in payloads if isinstance(p, EntityRows) for e in p.entities]
        rows: list[LookupRow] = []
        if entities:
            try:
                rows = self._lookup_all(payloads, entities)
            except ServingError as exc:  # fails the entity requests alone, not tensor ones
                rows = [exc] * len(entities)
        parts: list[torch.Tensor] = []
        errors: list[ServingError | None] = []
        counts: list[int] = []
        cursor = 0
        for payload in payloads:
            if isinstance(payload, TensorRows):
                parts.append(payload.tensor)
                errors.append(None)
                counts.append(payload.tensor.shape[0])
                continue
            n = len(payload.entities)
            mine, cursor = rows[cursor : cursor + n], cursor + n
            try:
                parts.append(self._tensor(payload, mine))
                errors.append(None)
                counts.append(n)
            except ServingError as exc:
                errors.append(exc)
                counts.append(0)
        inputs = torch.cat(parts) if len(parts) > 1 else (parts[0] if parts else None)
        has_errors = any(e is not None for e in errors)
        return PreparedBatch(inputs, errors if has_errors else None, counts)

    def _lookup_all(
        self, payloads: list[Payload], entities: list[dict[str, Any]]
    ) -> list[LookupRow]:
        if self.lookup is None or not self.spec.feature_service:
            raise InvalidInput(
                f"{self.spec.ref} was registered without a feature service, so it can't look "
                "features up by entity key; call /v2/models/{name}/infer with the feature values"
            )
        try:
            return list(self.lookup.lookup(self.spec.feature_service, entities))
        except InvalidInput:
            pass
        # One request's bad keys failed the whole batch's lookup: look each request up alone
        # so only that request fails.
        out: list[LookupRow] = []
        for payload in payloads:
            if isinstance(payload, EntityRows):
                try:
                    out.extend(self.lookup.lookup(self.spec.feature_service, payload.entities))
                except InvalidInput as exc:
                    out.extend([exc] * len(payload.entities))
        return out

    def _tensor(self, payload: EntityRows, rows: Sequence[LookupRow]) -> torch.Tensor:
        entities = payload.entities
        stale: dict[int, float] = {}
        found: list[Mapping[str, Any]] = []
        for i, row in enumerate(rows):
            if isinstance(row, StaleFeatures):
                stale[i] = row.age_s
                found.append(row.values)
            elif isinstance(row, ServingError):
                raise row
            elif isinstance(row, Exception):
                raise FeaturesUnavailable(f"feature lookup failed: {row}")
            elif row is not None:
                found.append(row)
        unknown = [entities[i] for i, row in enumerate(rows) if row is None]
        if unknown:
            raise UnknownEntities(self.spec.feature_service or "", unknown)
        if stale:
            payload.stale[self.spec.ref] = stale
        names = self.spec.feature_names
        values = [[_number(row, name) for name in names] for row in found]
        tensor = torch.tensor(values, dtype=self.dtype)
        if not self.spec.allow_nan and tensor.is_floating_point() and bool(tensor.isnan().any()):
            bad = sorted({names[j] for i, j in tensor.isnan().nonzero().tolist()})
            raise InvalidInput(
                f"the online store has no value for {', '.join(bad)} of some of these entities "
                f"and {self.spec.ref} does not accept NaN; materialize the feature view again"
            )
        return tensor


def _number(row: Mapping[str, Any], name: str) -> float:
    value = row.get(name)
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"feature {name!r} is {value!r}, not a number") from None


def split_rows(outputs: torch.Tensor, rows: list[int]) -> list[torch.Tensor]:
    return list(torch.split(outputs, rows)) if len(rows) > 1 else [outputs]


def split_checked(ref: str, outputs: torch.Tensor, rows: list[int]) -> list[Any]:
    """`split_rows`, failing alone each request whose outputs hold NaN or inf: a model that
    answers NaN has failed that request (it counts as an error, and a client must not
    mistake it for a prediction)."""
    parts = split_rows(outputs, rows)
    if not outputs.is_floating_point() or bool(torch.isfinite(outputs).all()):
        return parts
    return [
        part
        if bool(torch.isfinite(part).all())
        else ModelFailed(ref, "its outputs are not finite (NaN or inf)")
        for part in parts
    ]


class VersionMetrics(BatchMetrics, CacheMetrics, Protocol):
    """What a served version reports (its batches, its cache): `ServingMetrics` does."""

    def computed(self, ref: str, seconds: float, rows: int) -> None:
        """``rows`` predictions made in ``seconds`` of device time (0 for cached ones)."""


class ServedVersion:
    """A loaded version taking traffic under one role (champion, challenger, shadow)."""

    def __init__(
        self,
        loaded: LoadedModel,
        runtime: ModelRuntime,
        role: str,
        config: ServerConfig,
        *,
        lookup: FeatureLookup | None,
        prepare_pool: ThreadPoolExecutor,
        replica: str,
        started_at: datetime,
        metrics: VersionMetrics | None = None,
        shared: SharedCache | None = None,
    ) -> None:
        self.spec: ModelSpec = loaded.spec
        self.runtime = runtime
        self.role = role
        self.lookup = lookup
        self._metrics = metrics
        policy = self.spec.serving.cache
        # Off unless the model's policy turns it on (serving: {cache: {...}}).
        self.cache = PredictionCache(self.spec.ref, policy, metrics) if policy else None
        # The replica's Redis, for a version whose policy shares its cache (shared: true).
        self.shared = shared if policy is not None and policy.shared else None
        self.recorder = WindowRecorder(self.spec, role, replica, started_at)
        self.assembler = FeatureAssembler(self.spec, lookup, runtime.input_dtype)
        self.batcher: DynamicBatcher[Payload] = DynamicBatcher(
            self.spec.ref,
            self.assembler.prepare,
            self._compute,
            functools.partial(split_checked, self.spec.ref),
            config.batching,
            metrics=metrics,
            prepare_in_thread=_has_entities,
            prepare_pool=prepare_pool,
            estimate_s=runtime.estimate_s,
        )

    @property
    def ref(self) -> str:
        return self.spec.ref

    def start(self) -> None:
        self.batcher.start()

    def set_role(self, role: str) -> None:
        self.role = self.recorder.role = role

    def _compute(self, inputs: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        outputs = self.runtime.forward(inputs)  # on the device and back: its device time
        seconds = time.perf_counter() - start
        self.recorder.record_compute(seconds, inputs.shape[0])
        if self._metrics is not None:
            self._metrics.computed(self.spec.ref, seconds, inputs.shape[0])
        self.recorder.record_batch(inputs, outputs)
        return outputs

    def answered_from_cache(self, rows: int) -> None:
        """``rows`` were answered from this version's cache: they count as predictions."""
        self.recorder.record_cached(rows)
        if self._metrics is not None:
            self._metrics.computed(self.spec.ref, 0.0, rows)

    def share(self, items: list[tuple[Any, Any]]) -> None:
        """Answers this version computed: into the shared tier too, if it has one (and still
        takes traffic: an answer finishing after a swap is not shared)."""
        cache = self.cache
        if self.shared is not None and cache is not None and not cache.closed:
            self.shared.put_many(self.spec.ref, cache.policy.ttl_s, items)

    def entity_keys(self, entities: list[dict[str, Any]]) -> list[Any] | None:
        """The cache keys of these entities under the features' current generation; None when
        nothing may be cached now (no cache, or the generation is not known yet)."""
        if self.cache is None or self.lookup is None or not self.spec.feature_service:
            return None
        generation = self.lookup.generation(self.spec.feature_service)
        if generation is None:
            return None
        return [entity_key(generation, entity) for entity in entities]

    def submit(
        self, payload: Payload, rows: int, deadline: float, budget_ms: float, priority: int = NORMAL
    ) -> Any:
        return self.batcher.submit(payload, rows, deadline, budget_ms, priority)

    async def drain(self) -> None:
        if self.cache is not None:
            self.cache.close()
        await self.batcher.drain()

    def swapped_out(self) -> None:
        """It takes no more traffic (drained, or kept warm as a standby): drop its answers."""
        if self.cache is not None:
            self.cache.close()

    def swapped_in(self) -> None:
        """A standby takes traffic again (a rollback): its cache starts empty."""
        if self.cache is not None:
            self.cache.reopen()


def _has_entities(payloads: list[Payload]) -> bool:
    return any(isinstance(p, EntityRows) for p in payloads)
