"""The cached online feature client: Feast's online read behind a bounded, invalidated cache.

    client = FeatureClient(online_backend(store), RedisGenerations(redis_url))
    batch = client.get("churn_features@3", [{"user_id": 7}, {"user_id": 9}])
    batch.rows[0].values   # {"orders_7d": 3, ...}, or None: the store does not know user 7
    batch.rows[0].status   # "hit" | "fetched" | "missing" | "stale" ("unavailable": partial)

Per service, rows are cached for ``min(config.default_ttl_s, backend.freshness_s(service))``,
keyed by the entity key. Only the rows not fresh in the cache go to the backend, in one call
per ``get()``; a key being fetched by one thread is awaited, not refetched, by the others.
Unknown entities are cached too (status ``missing``). Every ``generation_check_s`` the client
reads the service's views' generations; when one moved (a materialization landed, in any
process), rows cached before it are no longer served fresh. When the backend raises
`BackendUnavailable`, rows younger than ``max_staleness_s`` are served with status ``stale``,
the backend is left alone for ``unavailable_backoff_s``, and `OnlineStoreUnavailable` is raised
if a requested row has nothing young enough (or, with ``get(..., partial=True)``, that row alone
comes back ``unavailable``). With ``check_in_background`` generations are read on a thread of
their own, so a hung generations source delays invalidation, never a read. An outage of the
store or of the generations is logged once when it begins and once when it ends.
The policy itself is `features.cache.decide`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, cast

from features.cache import Decision, Entry, Hit, LruCache, Stale
from features.errors import FeatureStoreError, OnlineStoreUnavailable
from features.outage import Outage
from features.refs import VersionedRef

if TYPE_CHECKING:
    from features.generations import GenerationSource
    from features.metrics import FeatureMetrics

log = logging.getLogger(__name__)

Status = Literal["hit", "fetched", "missing", "stale", "unavailable"]
EntityKey = tuple[tuple[str, Hashable], ...]
CacheKey = tuple[str, EntityKey]  # (name@version, entity key): str hashes are cached


class BackendUnavailable(FeatureStoreError):
    """The online store can't be reached; backends raise it, the client falls back to stale rows."""

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(why)


@dataclass(frozen=True)
class CacheConfig:
    """Knobs of `FeatureClient`. ``CacheConfig(default_ttl_s=30, max_staleness_s=120)``."""

    max_entries: int = 100_000
    default_ttl_s: float = 60
    max_staleness_s: float = 300
    generation_check_s: float = 0.5
    # A down Redis makes each read wait out the client's connect retries (seconds with
    # redis-py's defaults): after a failure, serve from the cache alone for this long.
    unavailable_backoff_s: float = 1.0
    # Read generations on a background thread, never on the caller's (serving sets it: a
    # database that hangs must not hold a batch); reads answer from what is known meanwhile.
    check_in_background: bool = False

    def __post_init__(self) -> None:
        if self.max_entries < 1:
            raise ValueError(f"CacheConfig.max_entries must be >= 1, got {self.max_entries}")
        for name in ("default_ttl_s", "max_staleness_s", "generation_check_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"CacheConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not self.unavailable_backoff_s >= 0:
            raise ValueError(
                f"CacheConfig.unavailable_backoff_s must be >= 0, got {self.unavailable_backoff_s}"
            )


class OnlineBackend(Protocol):
    """An online feature store, read a batch at a time: `online_backend(store)` gives the real
    one (`DirectOnlineBackend` on SQLite and Redis, `FeastOnlineBackend` elsewhere)."""

    def read(
        self, service: VersionedRef, entity_rows: list[dict[str, Any]]
    ) -> list[dict[str, Any] | None]:
        """One result per row, in order: the feature values by name, or None (entity unknown).
        Raises `BackendUnavailable` when the store can't be reached."""
        ...

    def views(self, service: VersionedRef) -> list[str]:
        """The Feast feature views backing the service (whose generations invalidate it)."""
        ...

    def freshness_s(self, service: VersionedRef) -> float | None:
        """How long the service's data stays current, if known; caps the cache's TTL."""
        ...


class FeatureRow(NamedTuple):
    """One entity's features (None when the store does not know it), how it was served, and
    how old it is (seconds since it was read from the store)."""

    values: dict[str, Any] | None
    status: Status
    age_s: float


@dataclass(slots=True)
class FeatureBatch:
    """The rows of one `FeatureClient.get`, in request order."""

    rows: list[FeatureRow]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[FeatureRow]:
        return iter(self.rows)

    @property
    def values(self) -> list[dict[str, Any] | None]:
        return [row.values for row in self.rows]


def ttl_for(config: CacheConfig, freshness_s: float | None) -> float:
    """The TTL of a service's rows: never longer than its data stays fresh."""
    if freshness_s is None:
        return config.default_ttl_s
    return max(0.0, min(config.default_ttl_s, freshness_s))


def entity_key(row: dict[str, Any]) -> EntityKey:
    """The canonical, hashable form of an entity row: its (name, value) pairs sorted by name."""
    key = tuple(row.items()) if len(row) == 1 else tuple(sorted(row.items()))
    try:
        hash(key)
    except TypeError as exc:
        raise ValueError(f"entity key values must be scalars (str, int...): {row!r}") from exc
    return key


def served_row(entry: Entry, status: Status, now: float) -> FeatureRow:
    """A cached entry as the caller sees it: a copy of the values (callers may mutate it)."""
    value = entry.value
    age = now - entry.fetched_at
    if age < 0.0:
        age = 0.0
    if value is None:
        return _row((None, "stale" if status == "stale" else "missing", age))
    return _row((dict(value), status, age))


def _row(fields: tuple[dict[str, Any] | None, Status, float]) -> FeatureRow:
    # tuple.__new__ skips NamedTuple's Python-level __new__: half the cost, once per served row.
    return cast(FeatureRow, tuple.__new__(FeatureRow, fields))


_UNAVAILABLE = FeatureRow(None, "unavailable", 0.0)


class _ServiceState:
    """What the client knows about one service: its views, TTL, and their generations."""

    __slots__ = (
        "applied_seq",
        "check_seq",
        "checked_at",
        "checking",
        "epoch",
        "generations",
        "known",
        "name",
        "ref",
        "ttl_s",
        "views",
    )

    def __init__(
        self,
        ref: VersionedRef,
        views: list[str],
        ttl_s: float,
        generations: dict[str, int],
        now: float,
    ) -> None:
        self.ref = ref
        self.name = str(ref)
        self.views = views
        self.ttl_s = ttl_s
        self.generations = generations
        self.known = False  # whether generations were ever read (the first read sets a base)
        self.epoch = 0  # bumped whenever a view's generation moves: entries carry it
        self.checked_at = now
        self.checking = False  # a background check is running
        self.check_seq = 0
        self.applied_seq = 0


class _Flight:
    """One in-flight backend read (of all the keys one get() missed): awaited by every other
    thread that wants one of those keys."""

    __slots__ = ("done", "entries", "epoch", "error")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch  # a caller under a newer epoch must not take this read's rows
        self.done = threading.Event()
        self.entries: dict[CacheKey, Entry] = {}
        self.error: BaseException | None = None


class FeatureClient:
    """Thread-safe cached reads of feature services.

    ``FeatureClient(backend, generations, CacheConfig(), clock=time.monotonic, metrics=None)``;
    ``client.get("churn_features@3", [{"user_id": 7}]) -> FeatureBatch``.
    """

    def __init__(
        self,
        backend: OnlineBackend,
        generations: GenerationSource,
        config: CacheConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: FeatureMetrics | None = None,
    ) -> None:
        self.backend = backend
        self.generations = generations
        self.config = config or CacheConfig()
        self._clock = clock
        self._metrics = metrics
        self._lock = threading.Lock()
        self._cache: LruCache[CacheKey] = LruCache(self.config.max_entries)
        self._flights: dict[CacheKey, _Flight] = {}
        self._states: dict[str | VersionedRef, _ServiceState] = {}  # by name@version and ref
        self._retry_at = -math.inf
        self._last_failure: BackendUnavailable | None = None
        self.store_outage = Outage(
            f"the online store ({type(backend).__name__})",
            log,
            impact="serving cached rows younger than max_staleness_s",
        )
        self.generations_outage = Outage(
            f"the feature generations ({type(generations).__name__})",
            log,
            impact="cached rows expire by TTL alone until they are back",
        )
        self._last: tuple[object, _ServiceState] | None = None

    @property
    def entries(self) -> int:
        """How many rows are cached."""
        return len(self._cache)

    def get(
        self,
        service: str | VersionedRef,
        entity_rows: list[dict[str, Any]],
        *,
        partial: bool = False,
    ) -> FeatureBatch:
        """The service's features for each entity row, in order (see the module docstring).
        With ``partial``, rows the store could not give (nor the cache, stale) come back with
        status ``unavailable`` instead of the whole call raising `OnlineStoreUnavailable`."""
        metrics = self._metrics
        if metrics is None:
            return FeatureBatch(self._get(self._service(service), entity_rows, partial)[0])
        started = time.perf_counter()
        state: _ServiceState | None = None
        try:
            state = self._service(service)
            rows, outcome, hits, stale = self._get(state, entity_rows, partial)
        except BaseException:
            label = state.name if state is not None else _metric_label(service)
            metrics.observe_get(label, "error", time.perf_counter() - started)
            raise
        metrics.observe_get(
            state.name,
            outcome,
            time.perf_counter() - started,
            hits,
            len(rows) - hits,
            stale,
            max([row[2] for row in rows]) if rows else None,
        )
        return FeatureBatch(rows)

    def generation(self, service: str) -> tuple[int, ...] | None:
        """The materialization generations of ``service``'s views as this client knows them
        (what its cached rows are served under), or None before they were first read or
        before the service was first looked up. Reads nothing: never blocks on a store.

        A value computed from rows this client returned after reading ``g`` here is at least
        as new as ``g``: a prediction cache keyed on it is never older than its features."""
        state = self._states.get(service)
        if state is None:
            return None
        with self._lock:
            if not state.known:
                return None
            return tuple(state.generations.get(view, 0) for view in state.views)

    def invalidate(
        self,
        service: str | VersionedRef | None = None,
        entity_rows: list[dict[str, Any]] | None = None,
    ) -> None:
        """Stop serving cached rows: those of ``entity_rows`` of ``service`` (dropped), all of
        ``service``, or all of every service (kept only as a stale fallback)."""
        if service is None:
            with self._lock:
                for state in set(self._states.values()):
                    state.epoch += 1
            return
        name = str(self._ref(service))
        with self._lock:
            if entity_rows is not None:
                for row in entity_rows:
                    self._cache.invalidate((name, entity_key(row)))
                return
            known = self._states.get(name)
            if known is not None:
                known.epoch += 1

    # -- internals ------------------------------------------------------------------------------
    @staticmethod
    def _ref(service: str | VersionedRef) -> VersionedRef:
        return service if isinstance(service, VersionedRef) else VersionedRef.parse(service)

    def _service(self, service: str | VersionedRef) -> _ServiceState:
        last = self._last  # callers repeat the same object: skip even the dict lookup
        if last is not None and last[0] is service:
            return last[1]
        state = self._states.get(service)
        if state is None:
            ref = self._ref(service)
            state = self._states.get(str(ref)) or self._start_service(ref)
            with self._lock:
                self._states.setdefault(service, state)
        self._last = (service, state)
        return state

    def _start_service(self, ref: VersionedRef) -> _ServiceState:
        try:
            views = list(self.backend.views(ref))
            ttl_s = ttl_for(self.config, self.backend.freshness_s(ref))
        except BackendUnavailable as exc:
            raise OnlineStoreUnavailable(str(ref), exc.why, self.config.max_staleness_s) from exc
        background = self.config.check_in_background
        generations = None if background else self._read_generations(ref, views)
        state = _ServiceState(ref, views, ttl_s, generations or {}, self._clock())
        if generations is None:
            state.checked_at = -math.inf  # check on the next get
        else:
            state.known = True
        with self._lock:
            return self._states.setdefault(state.name, state)

    def _get(
        self, state: _ServiceState, entity_rows: list[dict[str, Any]], partial: bool = False
    ) -> tuple[list[FeatureRow], str, int, int]:
        """The rows, the outcome (hit, fetched, stale, error), how many rows hit, how many were
        stale."""
        config = self.config
        now = self._clock()
        if now - state.checked_at >= config.generation_check_s:
            if config.check_in_background:
                self._check_in_background(state, now)
            else:
                self._check_generations(state, now)
        name = state.name
        keys = [(name, entity_key(row)) for row in entity_rows]

        rows: list[FeatureRow | None] = [None] * len(keys)
        missed: list[tuple[int, Decision]] = []
        ttl_s, max_staleness_s = state.ttl_s, config.max_staleness_s
        lookup = self._cache.lookup
        pending: dict[CacheKey, list[int]] = {}  # not fresh: key -> positions in the batch
        fallback: dict[CacheKey, Entry] = {}  # not fresh but young enough to serve if down
        owned: list[CacheKey] = []  # read from the backend by this call, in one flight
        owned_rows: list[dict[str, Any]] = []
        mine: _Flight | None = None  # this call's read, made only if something is missing
        awaited: dict[CacheKey, _Flight] = {}  # being read by another thread
        refused: BackendUnavailable | None = None
        with self._lock:
            epoch = state.epoch
            for i, key in enumerate(keys):
                decision = lookup(key, now, ttl_s, epoch, max_staleness_s)
                if type(decision) is Hit:
                    rows[i] = served_row(decision.entry, "hit", now)
                else:
                    missed.append((i, decision))
            if not missed:
                return cast("list[FeatureRow]", rows), "hit", len(keys), 0  # every row filled
            backing_off = now < self._retry_at
            for i, decision in missed:
                key = keys[i]
                positions = pending.get(key)
                if positions is not None:
                    positions.append(i)  # the same entity twice in one batch
                    continue
                pending[key] = [i]
                if isinstance(decision, Stale):
                    fallback[key] = decision.entry
                flight = self._flights.get(key)
                if flight is not None and flight.epoch == epoch:
                    awaited[key] = flight
                elif backing_off:
                    refused = self._last_failure
                else:
                    if mine is None:
                        mine = _Flight(epoch)
                    self._flights[key] = mine
                    owned.append(key)
                    owned_rows.append(entity_rows[i])
        if awaited and self._metrics is not None:
            self._metrics.observe_coalesced(name, len(awaited))  # before waiting: scrapes see it

        if mine is not None:
            self._fetch(state, mine, owned, owned_rows, epoch)
        for flight in awaited.values():
            flight.done.wait()

        failures: list[BackendUnavailable] = []
        stale_rows = unavailable = 0
        for key, positions in pending.items():
            # Every pending key is awaited, or read by this call, or refused (backing off).
            flight = awaited.get(key, mine)
            error: BaseException | None = refused
            if flight is not None:
                entry = flight.entries.get(key)
                if entry is not None:
                    row = served_row(entry, "fetched", now)
                    for i in positions:
                        rows[i] = row
                    continue
                error = flight.error
            if not isinstance(error, BackendUnavailable):
                raise error or RuntimeError(f"no result for {key!r}")  # a backend bug: surface it
            stale = fallback.get(key)
            if stale is None:
                if partial:
                    unavailable += len(positions)
                    for i in positions:
                        rows[i] = _UNAVAILABLE
                    continue
                failures.append(error)
                continue
            row = served_row(stale, "stale", now)
            stale_rows += len(positions)
            for i in positions:
                rows[i] = row
        if failures:
            raise OnlineStoreUnavailable(
                name, failures[0].why, config.max_staleness_s
            ) from failures[0]
        hits = len(keys) - sum(len(p) for p in pending.values())
        outcome = "error" if unavailable else "stale" if stale_rows else "fetched"
        return cast("list[FeatureRow]", rows), outcome, hits, stale_rows

    def _fetch(
        self,
        state: _ServiceState,
        flight: _Flight,
        keys: list[CacheKey],
        entity_rows: list[dict[str, Any]],
        epoch: int,
    ) -> None:
        """Read ``keys`` in one backend call and complete their flight, whatever happens."""
        fetched_at = self._clock()  # before the read: the data is at least this young
        started = time.perf_counter()
        try:
            values = self.backend.read(state.ref, entity_rows)
            if len(values) != len(entity_rows):
                raise RuntimeError(
                    f"{type(self.backend).__name__}.read returned {len(values)} rows "
                    f"for {len(entity_rows)}"
                )
        except BaseException as exc:
            flight.error = exc
            with self._lock:
                for key in keys:
                    self._release(key, flight)
                if isinstance(exc, BackendUnavailable):
                    self._retry_at = self._clock() + self.config.unavailable_backoff_s
                    self._last_failure = exc
            flight.done.set()
            if isinstance(exc, BackendUnavailable):
                self.store_outage.failed(exc.why)
                if self._metrics is not None:
                    self._metrics.observe_fetch(state.name, time.perf_counter() - started, ok=False)
                return
            raise
        entries = flight.entries
        evicted = 0
        with self._lock:
            put = self._cache.put
            for key, value in zip(keys, values, strict=True):
                entries[key] = entry = Entry(value, fetched_at, epoch)
                evicted += put(key, entry)
                self._release(key, flight)
            self._retry_at = -math.inf
            size = len(self._cache)
        flight.done.set()
        self.store_outage.ok()
        if self._metrics is not None:
            self._metrics.observe_fetch(state.name, time.perf_counter() - started)
            self._metrics.observe_size(size, evicted)

    def _release(self, key: CacheKey, flight: _Flight) -> None:
        """Forget ``flight`` as ``key``'s read in progress (a read started under a newer epoch
        may have taken its place). Called under the lock."""
        if self._flights.get(key) is flight:
            del self._flights[key]

    def _check_in_background(self, state: _ServiceState, now: float) -> None:
        """Start a check on a thread of its own unless one is running (a hung source holds
        one thread, not one per interval); the caller goes on with what is known."""
        with self._lock:
            if state.checking:
                return
            state.checking = True

        def check() -> None:
            try:
                self._check_generations(state, now)
            finally:
                with self._lock:
                    state.checking = False

        threading.Thread(target=check, name=f"generations-{state.name}", daemon=True).start()

    def _check_generations(self, state: _ServiceState, now: float) -> None:
        with self._lock:
            if now - state.checked_at < self.config.generation_check_s:
                return  # another thread is checking
            state.checked_at = now
            state.check_seq += 1
            seq = state.check_seq
        generations = self._read_generations(state.name, state.views)
        if generations is None:
            return
        with self._lock:
            if seq < state.applied_seq:
                return  # a later check already applied its answer
            state.applied_seq = seq
            if not state.known:  # the first answer: what entries fetched so far were under
                state.generations, state.known = generations, True
                return
            if generations == state.generations:
                return
            state.generations = generations
            state.epoch += 1
        log.info("features of %s invalidated: generations now %s", state.name, generations)
        if self._metrics is not None:
            self._metrics.observe_invalidation(state.name)

    def _read_generations(
        self, service: VersionedRef | str, views: list[str]
    ) -> dict[str, int] | None:
        try:
            generations = self.generations.current(views)
        except Exception as exc:
            # A broken invalidation feed must not take reads down: the TTL still bounds age.
            self.generations_outage.failed(f"reading {service}: {exc}")
            return None
        self.generations_outage.ok()
        return generations


def _metric_label(service: str | VersionedRef) -> str:
    """A bounded label for a service that could not be resolved (bad input stays one label)."""
    try:
        return str(service if isinstance(service, VersionedRef) else VersionedRef.parse(service))
    except FeatureStoreError:
        return "invalid"
