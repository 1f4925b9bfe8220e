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
A version that fails to load takes no traffic and the previous one keeps answering.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from serving.config import ServerConfig
from serving.errors import ModelLoadFailed, ModelNotFound, ModelNotReady, ServingError
from serving.metrics import ServingMetrics
from serving.routing import Route, choose
from serving.runtime import ModelRuntime, configure_cpu_threads
from serving.served import ServedVersion
from serving.spec import Deployment, DesiredStateSource, FeatureLookup, ModelLoader, WindowSink

log = logging.getLogger(__name__)

Key = tuple[str, int]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Failure:
    """A version that could not be loaded, and why; retried at the next poll."""

    ref: str
    why: str


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
        self.replica = config.replica or f"{socket.gethostname()}:{os.getpid()}"
        self.deployments: dict[str, Deployment] = {}  # what is served now, by model
        self.desired: dict[str, Deployment] = {}  # what was asked for
        self.live: dict[Key, ServedVersion] = {}
        self.failures: dict[Key, Failure] = {}
        self.started = False
        self._apply_lock = asyncio.Lock()
        self._prepare_pool = ThreadPoolExecutor(4, thread_name_prefix="prepare")
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        self._windows_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

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
        self._windows_task = asyncio.create_task(self._report_windows(), name="windows")

    async def stop(self) -> None:
        """Stop following, answer everything queued, report the last windows."""
        self._stop.set()
        self.source.close()
        if self._windows_task is not None:
            self._windows_task.cancel()
        served = list(self.live.values())
        self.live, self.deployments = {}, {}
        await asyncio.gather(*(s.drain() for s in served))
        await self._report(served)
        if self._follower is not None:
            await asyncio.to_thread(self._follower.join, 10)
        self._prepare_pool.shutdown(wait=False)

    # -- applying desired state ------------------------------------------------------------

    async def apply(self, desired: dict[str, Deployment]) -> None:
        """Load what is new, swap the routes, drain what is gone. Serialized."""
        async with self._apply_lock:
            if self.config.models:
                desired = {n: d for n, d in desired.items() if n in self.config.models}
            self.desired = desired
            needed = {(name, v) for name, d in desired.items() for v in d.versions}
            for key in sorted(needed - self.live.keys()):
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
            # The swap: one assignment each, no await in between, so a request routes either
            # entirely by the old table or entirely by the new one.
            self.live = {key: s for key, s in self.live.items() if key in keep}
            self.deployments = deployments
            for (name, version), served_version in self.live.items():
                served_version.set_role(deployments[name].role(version))
            for served_version in gone:
                log.info("draining %s (no longer in the desired state)", served_version.ref)
            await asyncio.gather(*(s.drain() for s in gone))
            await self._report(gone)

    async def _load(self, key: Key) -> None:
        name, version = key
        ref = f"{name}@{version}"
        start = time.perf_counter()
        try:
            served = await asyncio.to_thread(self._build, name, version)
        except ModelLoadFailed as exc:
            self.failures[key] = Failure(ref, exc.why)
            log.error("%s takes no traffic: %s", ref, exc.message)
            return
        except Exception as exc:  # a loader bug must not stop the replica
            self.failures[key] = Failure(ref, f"{type(exc).__name__}: {exc}")
            log.exception("%s takes no traffic: loading it raised", ref)
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

    def _build(self, name: str, version: int) -> ServedVersion:
        loaded = self.loader.load(name, version)
        if loaded.spec.feature_service and self.lookup is not None:
            try:
                self.lookup.warm(loaded.spec.feature_service)
            except ServingError as exc:  # /v2 infer still works; entity requests will say why
                log.warning("%s: its feature lookup is not ready: %s", loaded.spec.ref, exc)
        runtime = ModelRuntime(loaded, self.config.runtime)
        runtime.warm_up(self.config.runtime.warmup_batch_sizes or _powers(self.config))
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
        )

    def _follow(self) -> None:
        last = self.desired
        while not self._stop.is_set():
            self.source.wait(self.config.poll_s)
            if self._stop.is_set():
                return
            try:
                state = self.source.read()
            except Exception as exc:  # the database is down: keep serving what we have
                log.warning("could not read the desired state (%s); serving what is loaded", exc)
                continue
            if state == last and not self.failures:
                continue
            assert self._loop is not None
            future = asyncio.run_coroutine_threadsafe(self.apply(state), self._loop)
            try:
                future.result()
                last = state
            except Exception:
                log.exception("applying the desired state failed; will retry")

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

    @property
    def ready(self) -> bool:
        """Every desired model has a version answering."""
        return self.started and all(name in self.deployments for name in self.desired)

    # -- windows ---------------------------------------------------------------------------

    async def _report_windows(self) -> None:
        while True:
            await asyncio.sleep(self.config.window_s)
            await self._report(list(self.live.values()))

    async def _report(self, served: list[ServedVersion]) -> None:
        if served:
            await asyncio.to_thread(self._cut_and_report, served, self.wall())

    def _cut_and_report(self, served: list[ServedVersion], now: datetime) -> None:
        windows = [s.recorder.cut(now) for s in served]  # computes sketches: off the loop
        windows = [w for w in windows if w.requests]
        if self.sink is None or not windows:
            return
        try:
            self.sink.report(windows)
        except Exception:
            log.exception("reporting %d windows failed; they are dropped", len(windows))


def _powers(config: ServerConfig) -> tuple[int, ...]:
    sizes, size = [], 1
    while size < config.batching.max_batch_size:
        sizes.append(size)
        size *= 2
    return (*sizes, config.batching.max_batch_size)
