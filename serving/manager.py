"""Keeps a replica's served versions in line with the desired state, and routes requests.

    manager = ModelManager(loader, source, ServerConfig(), lookup=lookup, sink=sink)
    await manager.start()                  # loads and warms every desired version
    route = manager.route("churn", bucket) # (answering version, shadow or None)
    await manager.stop()

A change of desired state (read by a follower thread: a poll, woken early by NOTIFY where
the source supports it) is applied in three steps: every newly needed version is loaded and
warmed up on a worker thread while the old ones keep answering; the route table is replaced
in one assignment on the event loop; versions no longer needed drain their queues (every
request already queued is answered) and are dropped. So a swap loses and fails nothing.
A version that fails to load takes no traffic and the previous one keeps answering; it is
retried with backoff (``load_retry_s``, doubling up to a minute), and forgotten once it is
no longer desired. A champion replaced by another stays loaded as a standby for
``keep_warm_s``, so a rollback to it is a route flip.

In the background the replica cuts its windows every ``window_s`` and says what it serves
every ``heartbeat_s`` (and after each change). Windows the database can't take are kept,
up to ``max_pending_windows``, and sent with the next report that goes through; an outage
is logged once when it starts and once when it ends.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from serving.busy import BusyMeter
from serving.config import ServerConfig
from serving.errors import ModelLoadFailed, ModelNotFound, ModelNotReady, ServingError
from serving.metrics import ServingMetrics
from serving.routing import Route, choose
from serving.runtime import ModelRuntime, configure_cpu_threads
from serving.served import ServedVersion
from serving.shared_cache import SharedCache
from serving.spec import (
    Deployment,
    DesiredStateSource,
    FeatureLookup,
    ModelLoader,
    ReplicaStatus,
    WindowSink,
)
from serving.windows import Window

log = logging.getLogger(__name__)

Key = tuple[str, int]


def _utcnow() -> datetime:
    return datetime.now(UTC)


MAX_RETRY_S = 60.0


@dataclass(frozen=True)
class Failure:
    """A version that could not be loaded, and why; retried at ``retry_at`` (monotonic)."""

    ref: str
    why: str
    attempts: int = 1
    retry_at: float = 0.0


def retry_delay(attempts: int, base_s: float, cap_s: float = MAX_RETRY_S) -> float:
    """Seconds before the next load attempt after ``attempts`` failures: base, 2x, 4x... cap."""
    return min(cap_s, base_s * 2 ** max(0, attempts - 1))


@dataclass(frozen=True)
class Standby:
    """A former champion kept loaded without traffic until ``until`` (monotonic)."""

    served: ServedVersion
    until: float


class Outage:
    """Logs a dependency's outage once when it starts and once when it ends, with the count
    of failures in between, instead of once per attempt."""

    def __init__(self, what: str) -> None:
        self.what, self.failures, self.since = what, 0, 0.0

    def failed(self, exc: BaseException, consequence: str) -> None:
        if self.failures == 0:
            self.since = time.monotonic()
            log.warning("%s failed (%s); %s", self.what, _first_line(exc), consequence)
        self.failures += 1

    def succeeded(self) -> None:
        if self.failures:
            log.warning(
                "%s works again after %d failed attempt(s) over %.1f s",
                self.what,
                self.failures,
                time.monotonic() - self.since,
            )
        self.failures = 0


def effective(
    desired: Deployment, loaded: set[int], previous: Deployment | None
) -> Deployment | None:
    """The deployment this replica can actually serve given which versions loaded.

    A challenger or shadow that failed to load is left out; a champion that failed keeps the
    previous champion answering when that one is still loaded; with no champion and no
    challenger loaded the model is not served (None).
    """
    champion = desired.champion if desired.champion in loaded else None
    if champion is None and previous is not None and previous.champion in loaded:
        champion = previous.champion
    challenger = desired.challenger if desired.challenger in loaded else None
    shadow = desired.shadow if desired.shadow in loaded else None
    if champion is None and challenger is None:
        return None
    return replace(
        desired,
        champion=champion,
        challenger=challenger,
        canary_percent=desired.canary_percent if challenger is not None else 0,
        shadow=shadow,
    )


class ModelManager:
    """This replica's served versions, their routes, and the loop that follows desired state."""

    def __init__(
        self,
        loader: ModelLoader,
        source: DesiredStateSource,
        config: ServerConfig,
        *,
        lookup: FeatureLookup | None = None,
        sink: WindowSink | None = None,
        metrics: ServingMetrics | None = None,
        wall: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.loader, self.source, self.config = loader, source, config
        self.lookup, self.sink, self.wall = lookup, sink, wall
        self.metrics = metrics or ServingMetrics()
        if config.device_hour_price:
            self.metrics.device_hour_price = config.device_hour_price
        self.metrics.busy_meter = BusyMeter(config.busy_window_s, config.queue_budget_ms / 1000)
        self.metrics.oldest_wait = self.oldest_wait_s
        self.replica = config.replica or f"{socket.gethostname()}:{os.getpid()}"
        self.deployments: dict[str, Deployment] = {}  # what is served now, by model
        self.desired: dict[str, Deployment] = {}  # what was asked for
        self.live: dict[Key, ServedVersion] = {}
        self.standby: dict[Key, Standby] = {}  # former champions, loaded, no traffic
        self.failures: dict[Key, Failure] = {}
        self.started = False
        self.started_at = wall()
        self._apply_lock = asyncio.Lock()
        self._prepare_pool = ThreadPoolExecutor(4, thread_name_prefix="prepare")
        # Reports and heartbeats go through one thread: a hung database delays them, never
        # a request, and they can't pile up.
        self._report_pool = ThreadPoolExecutor(1, thread_name_prefix="report")
        self._heartbeat: Future[None] | None = None
        self._pending: deque[Window] = deque()  # windows the database has not taken yet
        self._pending_lock = threading.Lock()
        self._sink_outage = Outage("reporting windows to the control plane")
        self._state_outage = Outage("reading the desired state")
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        shared = config.shared_cache
        self.shared_cache = SharedCache(shared, self.metrics) if shared is not None else None
        self._said_unshared = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the desired state once, then follow it; returns when the first load is done."""
        self._loop = asyncio.get_running_loop()
        configure_cpu_threads(self.config.runtime)
        state = await asyncio.to_thread(self.source.read)
        await self.apply(state)
        # Everything imported and loaded so far lives as long as the process: keep it out of
        # the collector's full passes, which otherwise stall every in-flight request for
        # 100-250 ms about once a second under load (measured: 3.6% of requests at c=64).
        gc.collect()
        gc.freeze()
        self.started = True
        self._follower = threading.Thread(target=self._follow, name="desired-state", daemon=True)
        self._follower.start()
        self._tasks = [
            asyncio.create_task(self._report_windows(), name="windows"),
            asyncio.create_task(self._keep_alive(), name="heartbeat"),
            asyncio.create_task(self._watch_loop(), name="loop-lag"),
        ]

    async def stop(self) -> None:
        """Stop following, answer everything queued, report the last windows."""
        self._stop.set()
        self.source.close()
        for task in self._tasks:
            task.cancel()
        served = [*self.live.values(), *(s.served for s in self.standby.values())]
        self.live, self.deployments, self.standby = {}, {}, {}
        await asyncio.gather(*(s.drain() for s in served))
        await self._report(served)
        if self._follower is not None:
            await asyncio.to_thread(self._follower.join, 10)
        if self.shared_cache is not None:
            await self.shared_cache.aclose()
        self._prepare_pool.shutdown(wait=False)
        self._report_pool.shutdown(wait=False)

    # -- applying desired state ------------------------------------------------------------

    async def apply(self, desired: dict[str, Deployment]) -> None:
        """Load what is new, swap the routes, drain what is gone. Serialized."""
        async with self._apply_lock:
            if self.config.models:
                desired = {n: d for n, d in desired.items() if n in self.config.models}
            self.desired = desired
            needed = {(name, v) for name, d in desired.items() for v in d.versions}
            # Failures of versions nobody wants any more are forgotten, not retried.
            self.failures = {k: f for k, f in self.failures.items() if k in needed}
            for key in sorted(needed - self.live.keys()):
                if key in self.standby:  # a rollback to a recent champion: no load at all
                    self.live[key] = self.standby.pop(key).served
                    self.live[key].swapped_in()
                elif self._due(key):
                    await self._load(key)
            deployments: dict[str, Deployment] = {}
            for name, wanted in desired.items():
                loaded = {v for (n, v) in self.live if n == name}
                served = effective(wanted, loaded, self.deployments.get(name))
                if served is not None:
                    deployments[name] = served
                    self.metrics.revision.labels(name).set(served.revision)
            keep = {(name, v) for name, d in deployments.items() for v in d.versions}
            gone = [self.live[key] for key in self.live.keys() - keep]
            previous = self.deployments
            # The swap: one assignment each, no await in between, so a request routes either
            # entirely by the old table or entirely by the new one.
            self.live = {key: s for key, s in self.live.items() if key in keep}
            self.deployments = deployments
            for (name, version), served_version in self.live.items():
                served_version.set_role(deployments[name].role(version))
            for served_version in gone:
                served_version.swapped_out()  # its cached answers go with it
            retired = []
            for served_version in gone:
                name, version = served_version.spec.name, served_version.spec.version
                was = previous.get(name)
                if was is not None and was.champion == version and self.config.keep_warm_s > 0:
                    retired += self._keep_warm(served_version)
                else:
                    log.info("draining %s (no longer in the desired state)", served_version.ref)
                    retired.append(served_version)
            await self._retire(retired)
        self._beat()

    def _keep_warm(self, served: ServedVersion) -> list[ServedVersion]:
        """Keep a replaced champion loaded without traffic; returns the standby it displaces
        (one per model, so memory stays bounded)."""
        name = served.spec.name
        displaced = [s.served for (n, _), s in self.standby.items() if n == name]
        self.standby = {k: s for k, s in self.standby.items() if k[0] != name}
        served.set_role("standby")
        until = time.monotonic() + self.config.keep_warm_s
        self.standby[(name, served.spec.version)] = Standby(served, until)
        log.info("%s stays loaded for %.0f s as a standby", served.ref, self.config.keep_warm_s)
        return displaced

    async def _retire(self, served: list[ServedVersion]) -> None:
        """Drain versions that take no more traffic, report their last windows, drop them."""
        if not served:
            return
        await asyncio.gather(*(s.drain() for s in served))
        await self._report(served)
        for s in served:
            self.metrics.forget(s.spec.name, s.spec.version)

    async def expire_standby(self) -> None:
        """Drop the standbys whose time is up."""
        async with self._apply_lock:
            now = time.monotonic()
            expired = [s.served for s in self.standby.values() if s.until <= now]
            self.standby = {k: s for k, s in self.standby.items() if s.until > now}
            await self._retire(expired)

    def _due(self, key: Key) -> bool:
        failure = self.failures.get(key)
        return failure is None or failure.retry_at <= time.monotonic()

    async def _load(self, key: Key) -> None:
        name, version = key
        ref = f"{name}@{version}"
        start = time.perf_counter()
        try:
            served = await asyncio.to_thread(self._build, name, version)
        except Exception as exc:  # a loader bug must not stop the replica either
            self._failed(key, ref, exc)
            return
        self.failures.pop(key, None)
        served.start()
        self.live[key] = served
        log.info(
            "%s loaded on %s, warmed up at batch sizes %s in %.2f s",
            ref,
            served.runtime.device,
            sorted(served.runtime.warmed_up),
            time.perf_counter() - start,
        )

    def _failed(self, key: Key, ref: str, exc: Exception) -> None:
        why = exc.why if isinstance(exc, ModelLoadFailed) else f"{type(exc).__name__}: {exc}"
        attempts = self.failures[key].attempts + 1 if key in self.failures else 1
        delay = retry_delay(attempts, self.config.load_retry_s)
        self.failures[key] = Failure(ref, why, attempts, time.monotonic() + delay)
        if isinstance(exc, ModelLoadFailed):
            log.error(
                "%s takes no traffic: %s (attempt %d; next in %.0f s)", ref, why, attempts, delay
            )
        else:
            log.exception("%s takes no traffic: loading it raised (attempt %d)", ref, attempts)

    def _build(self, name: str, version: int) -> ServedVersion:
        loaded = self.loader.load(name, version)
        if loaded.spec.feature_service and self.lookup is not None:
            try:
                self.lookup.warm(loaded.spec.feature_service)
            except ServingError as exc:  # /v2 infer still works; entity requests will say why
                log.warning("%s: its feature lookup is not ready: %s", loaded.spec.ref, exc)
        runtime = ModelRuntime(loaded, self.config.runtime)
        runtime.warm_up(self.config.runtime.warmup_batch_sizes or _powers(self.config))
        cache = loaded.spec.serving.cache
        if cache is not None and cache.shared and self.shared_cache is None:
            if not self._said_unshared:
                log.warning(
                    "%s's policy shares its prediction cache, but this replica has no Redis "
                    "for it: its answers stay in this replica's cache (set --cache-redis-url "
                    "or MLCP_CACHE_REDIS_URL)",
                    loaded.spec.ref,
                )
            self._said_unshared = True
        return ServedVersion(
            loaded,
            runtime,
            "loading",
            self.config,
            lookup=self.lookup,
            prepare_pool=self._prepare_pool,
            replica=self.replica,
            started_at=self.wall(),
            metrics=self.metrics,
            shared=self.shared_cache,
        )

    def _follow(self) -> None:
        last = self.desired
        while not self._stop.is_set():
            self.source.wait(self._next_wait())
            if self._stop.is_set():
                return
            try:
                state = self.source.read()
            except Exception as exc:  # the database is down: keep serving what we have
                self._state_outage.failed(exc, "serving what is loaded until it is back")
                continue
            self._state_outage.succeeded()
            if state == last and not self._retry_due():
                continue
            assert self._loop is not None
            future = asyncio.run_coroutine_threadsafe(self.apply(state), self._loop)
            try:
                future.result()
                last = state
            except Exception:
                log.exception("applying the desired state failed; will retry")

    def _retry_due(self) -> bool:
        now = time.monotonic()
        return any(f.retry_at <= now for f in self.failures.values())

    def _next_wait(self) -> float:
        """The poll period, shortened when a failed load is due for a retry sooner."""
        if not self.failures:
            return self.config.poll_s
        soonest = min(f.retry_at for f in self.failures.values()) - time.monotonic()
        return max(0.01, min(self.config.poll_s, soonest))

    # -- routing ---------------------------------------------------------------------------

    def route(self, name: str, bucket: int) -> tuple[ServedVersion, ServedVersion | None]:
        deployment = self.deployments.get(name)
        if deployment is None:
            raise self._missing(name)
        route: Route = choose(deployment, bucket)
        primary = self.live[(name, route.primary)]
        shadow = self.live.get((name, route.shadow)) if route.shadow is not None else None
        return primary, shadow

    def primary(self, name: str) -> ServedVersion:
        """The version that answers most of ``name``'s traffic: the champion (the challenger
        while there is none). What model metadata and readiness describe."""
        deployment = self.deployments.get(name)
        if deployment is None:
            raise self._missing(name)
        version = deployment.champion if deployment.champion is not None else deployment.challenger
        return self.live[(name, version)]  # type: ignore[index]

    def version(self, name: str, version: int) -> ServedVersion:
        served = self.live.get((name, version))
        if served is None:
            failure = self.failures.get((name, version))
            if failure is not None:
                raise ModelNotReady(f"{failure.ref} failed to load: {failure.why}")
            raise ModelNotFound(name, version, self.served_refs())
        return served

    def _missing(self, name: str) -> ServingError:
        failed = [f for (n, _), f in self.failures.items() if n == name]
        if failed:
            return ModelNotReady(f"{failed[0].ref} failed to load: {failed[0].why}")
        if not self.started:
            return ModelNotReady(f"model '{name}' is loading")
        return ModelNotFound(name, None, self.served_refs())

    def served_refs(self) -> tuple[str, ...]:
        return tuple(sorted(s.ref for s in self.live.values()))

    def oldest_wait_s(self) -> float:
        """How long the oldest request still queued on this replica has waited."""
        now = time.monotonic()
        return max((s.batcher.oldest_wait_s(now) for s in self.live.values()), default=0.0)

    @property
    def ready(self) -> bool:
        """Every desired model has a version answering."""
        return self.started and all(name in self.deployments for name in self.desired)

    # -- windows and heartbeats ------------------------------------------------------------

    async def _report_windows(self) -> None:
        while True:
            await asyncio.sleep(self.config.window_s)
            await self._report(list(self.live.values()))

    async def _watch_loop(self, every_s: float = 0.1) -> None:
        """Sample how late the event loop runs a timer: the busy gauge's view of HTTP load."""
        while True:
            start = time.monotonic()
            await asyncio.sleep(every_s)
            self.metrics.busy_meter.lag(time.monotonic() - start - every_s)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            await self.expire_standby()
            self._beat()

    async def _report(self, served: list[ServedVersion]) -> None:
        now = self.wall()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._report_pool, self._cut_and_report, served, now)

    def _cut_and_report(self, served: list[ServedVersion], now: datetime) -> None:
        windows = [s.recorder.cut(now) for s in served]  # computes sketches: off the loop
        self.send_windows([w for w in windows if w.requests])

    def send_windows(self, windows: list[Window]) -> None:
        """Queue ``windows`` behind any the database has not taken yet, then send them all
        in one report; on failure they stay queued (the oldest dropped past the bound)."""
        if self.sink is None:
            return
        with self._pending_lock:
            self._pending.extend(windows)
            dropped = len(self._pending) - self.config.max_pending_windows
            for _ in range(max(0, dropped)):
                self._pending.popleft()
            batch = list(self._pending)
        if dropped > 0:
            self.metrics.windows_dropped.inc(dropped)
            log.error("dropped the %d oldest unreported windows (backlog full)", dropped)
        if batch:
            try:
                self.sink.report(batch)
            except Exception as exc:
                self._sink_outage.failed(
                    exc, f"keeping windows until it is back ({len(batch)} now)"
                )
            else:
                self._sink_outage.succeeded()
                with self._pending_lock:
                    for _ in range(min(len(batch), len(self._pending))):
                        self._pending.popleft()
        self.metrics.windows_pending.set(len(self._pending))

    @property
    def pending_windows(self) -> int:
        return len(self._pending)

    def status(self) -> ReplicaStatus:
        """What this replica serves now: its heartbeat."""
        return ReplicaStatus(
            replica=self.replica,
            started_at=self.started_at,
            at=self.wall(),
            serving=dict(self.deployments),
            standby=tuple(sorted(s.served.ref for s in self.standby.values())),
            failures={f.ref: f.why for f in self.failures.values()},
        )

    def _beat(self) -> None:
        """Send a heartbeat in the background, unless the last one is still on its way."""
        if self.sink is None or (self._heartbeat is not None and not self._heartbeat.done()):
            return
        try:
            self._heartbeat = self._report_pool.submit(self._send_heartbeat, self.status())
        except RuntimeError:  # stopping: the pool is shut down
            return

    def _send_heartbeat(self, status: ReplicaStatus) -> None:
        assert self.sink is not None
        try:
            self.sink.heartbeat(status)
        except Exception as exc:
            self._sink_outage.failed(exc, "keeping windows until it is back")


def _powers(config: ServerConfig) -> tuple[int, ...]:
    sizes, size = [], 1
    while size < config.batching.max_batch_size:
        sizes.append(size)
        size *= 2
    return (*sizes, config.batching.max_batch_size)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
