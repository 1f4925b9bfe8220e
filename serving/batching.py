"""The dynamic batcher: requests queue per version; a batch closes at ``max_batch_size`` rows
or ``max_delay_ms`` after its first request; inference runs off the event loop.

    batcher = DynamicBatcher("churn@3", prepare, compute, BatchingConfig(), metrics)
    batcher.start()
    outputs = await batcher.submit(payload, rows=1, deadline=now + 0.5)
    await batcher.drain()        # a swap: finish what is queued, take nothing new

The decision of what to run next is `collect_batch`, a pure function of the queue, the
config and the time; the loops around it only carry it out.

Requests carry a priority class (``critical``, ``normal``, ``batch``; `serving.config`).
Each class queues apart and batches fill from the most urgent class first; `admit` decides
whether a request may queue (each class up to its share of ``max_queue``, a full queue
shedding its newest request of a lower class for a higher one), and `overtakes` lets
queued requests of a more urgent class run before a batch already prepared of lower ones,
so a critical request waits for at most the batch on the model. Two stages run concurrently:
while batch N computes on the version's compute thread, batch N+1 is collected and
*prepared* (its features fetched) on a worker thread, so feature reads overlap compute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import torch

from serving.config import NORMAL, PRIORITIES, BatchingConfig
from serving.errors import (
    DeadlineExceeded,
    ModelFailed,
    ModelNotReady,
    Overloaded,
    ServingError,
    Shed,
)

log = logging.getLogger(__name__)

P = TypeVar("P")  # what a request carries (a tensor, or entity keys)


@dataclass(slots=True, eq=False)
class Pending(Generic[P]):
    """One queued request: its rows, when it arrived and by when it must be answered."""

    payload: P
    rows: int
    enqueued_at: float
    deadline: float
    future: asyncio.Future[Any] | None = None
    budget_ms: float = 0.0
    priority: int = NORMAL  # its class: an index into serving.config.PRIORITIES


@dataclass(frozen=True)
class Decision(Generic[P]):
    """What to do now: fail ``expired`` (504), compute ``batch`` (maybe empty), and if nothing
    is ready, look again after ``wait_s`` (None: only when a request arrives)."""

    expired: tuple[Pending[P], ...] = ()
    batch: tuple[Pending[P], ...] = ()
    wait_s: float | None = None


def collect_batch(
    queue: Sequence[Pending[P]],
    config: BatchingConfig,
    now: float,
    estimate_s: float = 0.0,
    idle: bool = False,
) -> Decision[P]:
    """Decide, at ``now``, which queued requests to fail and which to batch.

    - A request whose deadline falls before ``now + estimate_s`` (the expected compute time)
      can't be answered in time: it expires without using the device.
    - The batch takes requests from the head, in order, while their rows fit in
      ``max_batch_size`` (a single larger request runs alone).
    - It closes when full, when the next request would not fit, ``max_delay_ms`` after its
      first request arrived, when waiting longer would miss a member's deadline, or (with
      ``config.close_when_idle``) at once when the model is ``idle``.
    """
    expired = tuple(p for p in queue if p.deadline < now + estimate_s)
    live = [p for p in queue if p.deadline >= now + estimate_s] if expired else list(queue)
    if not live:
        return Decision(expired=expired)
    batch: list[Pending[P]] = []
    rows = 0
    for pending in live:
        if batch and rows + pending.rows > config.max_batch_size:
            break
        batch.append(pending)
        rows += pending.rows
    full = rows >= config.max_batch_size or len(batch) < len(live)
    close_at = min(
        live[0].enqueued_at + config.max_delay_s,
        min(p.deadline for p in batch) - estimate_s,
    )
    if full or now >= close_at or (idle and config.close_when_idle):
        return Decision(expired=expired, batch=tuple(batch))
    # Look again when the batch is due, or sooner when a queued request would expire.
    soonest = min(close_at, min(p.deadline for p in live) - estimate_s)
    return Decision(expired=expired, wait_s=max(soonest - now, 0.0))


@dataclass(frozen=True)
class Admission:
    """Whether a request may queue, and the class whose newest queued request is shed to
    make room for it (None: nobody is)."""

    queue: bool
    shed: int | None = None


def admit(depths: Sequence[int], priority: int, config: BatchingConfig) -> Admission:
    """Decide whether a class-``priority`` request may join queues holding ``depths``
    requests per class (most urgent first).

    It queues while the total is under its class's share of ``max_queue``; past that, it
    takes the place of the newest request of the least urgent class below it that has any,
    and is refused (503) when there is none: lower classes are shed first.
    """
    if sum(depths) < config.class_limit(priority):
        return Admission(True)
    for lower in range(len(depths) - 1, priority, -1):
        if depths[lower]:
            return Admission(True, shed=lower)
    return Admission(False)


def overtakes(queued: int | None, staged: Sequence[Pending[Any]]) -> bool:
    """Whether the queued requests of class ``queued`` (the most urgent with any; None: the
    queue is empty) run before the prepared batch ``staged``: they are more urgent than
    every one of its members."""
    return queued is not None and bool(staged) and all(queued < p.priority for p in staged)


@dataclass
class PreparedBatch:
    """A batch made ready: ``inputs`` for the members without an error, in member order;
    ``errors[i]`` fails member ``i`` alone (e.g. its entity keys were wrong).
    ``row_counts`` gives each member's rows in ``inputs`` (0 for failed members)."""

    inputs: torch.Tensor | None
    errors: list[ServingError | None] | None = None
    row_counts: list[int] | None = None

    def select(self, keep: list[int], members: Sequence[Pending[Any]]) -> Any:
        """The inputs of the kept members only (every member's rows, in order, otherwise)."""
        assert self.inputs is not None, "select() on a batch whose every member failed"
        counts = self.row_counts or [p.rows for p in members]
        if len(keep) == sum(1 for c in counts if c) and all(counts[i] for i in keep):
            return self.inputs
        offsets, start = [], 0
        for count in counts:
            offsets.append(start)
            start += count
        index = torch.cat([torch.arange(offsets[i], offsets[i] + counts[i]) for i in keep])
        return self.inputs.index_select(0, index)


class BatchMetrics(Protocol):
    """What the batcher reports; `serving.metrics.ServingMetrics` implements it."""

    def batch(self, ref: str, rows: int, queue_s: Sequence[float], compute_s: float) -> None:
        """One computed batch: its rows, each member's wait, its compute time."""

    def queue_depth(self, ref: str, depth: int) -> None: ...


@dataclass
class _Stats:
    batches: int = 0
    rows: int = 0
    expired: int = 0
    rejected: int = 0
    shed: int = 0  # queued, then dropped for a more urgent class's request
    overtaken: int = 0  # prepared batches that waited for a more urgent one


class DynamicBatcher(Generic[P]):
    """Batches one version's requests and runs them on its own compute thread.

    ``prepare(payloads) -> PreparedBatch`` builds one batch input (on a worker thread when
    ``prepare_in_thread(payloads)`` says so, else inline) and may fail single members;
    ``compute(inputs) -> outputs`` runs the model on the compute thread; ``split(outputs,
    rows)`` cuts the outputs back into one result per request (a `ServingError` in its
    place fails that request alone). A prepare that raises `ServingError` fails that
    batch's requests with it.
    """

    def __init__(
        self,
        ref: str,
        prepare: Callable[[list[P]], PreparedBatch],
        compute: Callable[[Any], Any],
        split: Callable[[Any, list[int]], list[Any]],
        config: BatchingConfig,
        *,
        metrics: BatchMetrics | None = None,
        prepare_in_thread: Callable[[list[P]], bool] | None = None,
        prepare_pool: ThreadPoolExecutor | None = None,
        estimate_s: Callable[[int], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ref, self.config, self.clock = ref, config, clock
        self._prepare, self._compute, self._split = prepare, compute, split
        self._metrics: BatchMetrics = metrics or _NoMetrics()
        self._prepare_in_thread = prepare_in_thread or (lambda _: False)
        self._prepare_pool = prepare_pool
        self._estimate_s = estimate_s or (lambda _: 0.0)
        self._queues: tuple[deque[Pending[P]], ...] = tuple(deque() for _ in PRIORITIES)
        self._arrived = asyncio.Event()
        self._ready: asyncio.Queue[tuple[list[Pending[P]], PreparedBatch] | None] = asyncio.Queue(
            maxsize=1
        )
        self._compute_pool = ThreadPoolExecutor(1, thread_name_prefix=f"compute-{ref}")
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._computing = False
        self._staged = 0  # requests taken off the queue, not yet handed to the model
        self.stats = _Stats()

    # -- the request side ------------------------------------------------------------------

    @property
    def depth(self) -> int:
        return sum(len(q) for q in self._queues)

    @property
    def waiting(self) -> int:
        """Requests accepted and not yet computing: the queue plus the batches being
        prepared (features fetched) or waiting for the model."""
        return self.depth + self._staged

    def submit(
        self, payload: P, rows: int, deadline: float, budget_ms: float, priority: int = NORMAL
    ) -> asyncio.Future[Any]:
        """Queue a request of class ``priority``; its future resolves to its outputs or
        raises a ServingError. Raises Overloaded when its class may not queue (see `admit`)
        and ModelNotReady once draining."""
        if self._closing:
            raise ModelNotReady(f"{self.ref} is draining; retry")
        queues = self._queues
        admission = admit([len(q) for q in queues], priority, self.config)
        if not admission.queue:
            self.stats.rejected += 1
            raise Overloaded(self.ref, self.depth, self.config.retry_after_s, PRIORITIES[priority])
        if admission.shed is not None:
            victim = queues[admission.shed].pop()
            self.stats.shed += 1
            _fail(
                victim,
                Shed(self.ref, self.depth, self.config.retry_after_s, PRIORITIES[admission.shed]),
            )
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        queues[priority].append(
            Pending(payload, rows, self.clock(), deadline, future, budget_ms, priority)
        )
        self._arrived.set()
        return future

    def oldest_wait_s(self, now: float) -> float:
        """How long the oldest queued request has waited (0.0: none is queued)."""
        heads = [q[0].enqueued_at for q in self._queues if q]
        return max(0.0, now - min(heads)) if heads else 0.0

    def _queued(self) -> Sequence[Pending[P]]:
        """Every queued request, most urgent class first, each class in arrival order."""
        filled = [q for q in self._queues if q]
        if len(filled) == 1:
            return filled[0]
        return [p for q in filled for p in q]

    def _most_urgent(self) -> int | None:
        return next((i for i, q in enumerate(self._queues) if q), None)

    # -- the loops -------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._collect_loop(), name=f"collect-{self.ref}"),
            asyncio.create_task(self._compute_loop(), name=f"compute-{self.ref}"),
        ]

    async def drain(self) -> None:
        """Stop taking requests, answer every queued one, then stop the loops."""
        self._closing = True
        self._arrived.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._compute_pool.shutdown(wait=False)

    async def _collect_loop(self) -> None:
        try:
            while True:
                now = self.clock()
                estimate = self._estimate_s(self.config.max_batch_size)
                idle = not self._computing and self._ready.empty()
                decision = collect_batch(self._queued(), self.config, now, estimate, idle)
                for pending in decision.expired:
                    self._remove(pending)
                    self._expire(pending)
                if decision.batch:
                    members = self._take(decision.batch)
                    self._staged += len(members)
                    await self._ready.put((members, await self._prepare_batch(members)))
                    continue
                if not self.depth and self._closing:
                    return
                self._arrived.clear()
                if decision.wait_s is None:
                    await self._arrived.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(decision.wait_s):
                            await self._arrived.wait()
                    if self._closing and self.depth:
                        continue
        finally:
            await self._ready.put(None)

    async def _prepare_batch(self, members: list[Pending[P]]) -> PreparedBatch:
        payloads = [p.payload for p in members]
        try:
            if self._prepare_pool is not None and self._prepare_in_thread(payloads):
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._prepare_pool, self._prepare, payloads)
            return self._prepare(payloads)
        except ServingError as exc:
            return PreparedBatch(None, [exc] * len(members))
        except Exception as exc:  # a bug in prepare must fail the batch, not the loop
            log.exception("preparing a batch of %s failed", self.ref)
            return PreparedBatch(None, [_internal(exc)] * len(members))

    def _take(self, batch: Sequence[Pending[P]]) -> list[Pending[P]]:
        """Take a decided batch off the queues (it is their heads, most urgent first)."""
        members = []
        for pending in batch:
            taken = self._queues[pending.priority].popleft()
            assert taken is pending, "a batch must be the head of the queues"
            members.append(taken)
        return members

    async def _overtaking(self, staged: list[Pending[P]]) -> None:
        """Run queued requests more urgent than every member of ``staged`` first."""
        urgent = self._most_urgent()
        if not overtakes(urgent, staged):
            return
        assert urgent is not None
        now = self.clock()
        estimate = self._estimate_s(self.config.max_batch_size)
        decision = collect_batch(self._queues[urgent], self.config, now, estimate, idle=True)
        for pending in decision.expired:
            self._remove(pending)
            self._expire(pending)
        if decision.batch:
            self.stats.overtaken += 1
            members = self._take(decision.batch)
            await self._run(members, await self._prepare_batch(members))

    async def _compute_loop(self) -> None:
        while (item := await self._ready.get()) is not None:
            members, prepared = item
            self._staged -= len(members)
            await self._overtaking(members)
            await self._run(members, prepared)

    async def _run(self, members: list[Pending[P]], prepared: PreparedBatch) -> None:
        """Compute one prepared batch and answer its members."""
        loop = asyncio.get_running_loop()
        now = self.clock()
        keep = []
        for index, pending in enumerate(members):
            error = prepared.errors[index] if prepared.errors else None
            if error is not None:
                _fail(pending, error)
            elif pending.deadline < now:
                self._expire(pending)
            elif pending.future is not None and pending.future.done():
                continue  # its caller gave up (deadline, disconnect): don't compute it
            else:
                keep.append(index)
        if not keep:
            return
        rows = [members[i].rows for i in keep]
        start = self.clock()
        self._computing = True
        try:
            outputs = await loop.run_in_executor(
                self._compute_pool, self._compute, prepared.select(keep, members)
            )
            results = self._split(outputs, rows)
        except Exception as exc:
            log.exception("computing a batch of %d rows on %s failed", sum(rows), self.ref)
            for index in keep:
                _fail(members[index], ModelFailed(self.ref, f"{type(exc).__name__}: {exc}"))
            return
        finally:
            self._computing = False
            self._arrived.set()  # the model is free: the collector may close a batch now
        compute_s = self.clock() - start
        self._observe(members, keep, rows, start, compute_s)
        for index, result in zip(keep, results, strict=True):
            if isinstance(result, ServingError):
                _fail(members[index], result)
                continue
            future = members[index].future
            if future is not None and not future.done():
                future.set_result(result)

    def _observe(
        self,
        members: list[Pending[P]],
        keep: list[int],
        rows: list[int],
        start: float,
        compute_s: float,
    ) -> None:
        stats = self.stats
        stats.batches += 1
        stats.rows += sum(rows)
        queue_s = [start - members[i].enqueued_at for i in keep]
        self._metrics.batch(self.ref, sum(rows), queue_s, compute_s)
        self._metrics.queue_depth(self.ref, self.depth)

    def _remove(self, pending: Pending[P]) -> None:
        with contextlib.suppress(ValueError):
            self._queues[pending.priority].remove(pending)

    def _expire(self, pending: Pending[P]) -> None:
        self.stats.expired += 1
        _fail(pending, DeadlineExceeded(self.ref, pending.budget_ms))


class _NoMetrics:
    def batch(self, ref: str, rows: int, queue_s: Sequence[float], compute_s: float) -> None:
        pass

    def queue_depth(self, ref: str, depth: int) -> None:
        pass


def _fail(pending: Pending[Any], error: BaseException) -> None:
    if pending.future is not None and not pending.future.done():
        pending.future.set_exception(error)


def _internal(exc: BaseException) -> ServingError:
    error = ServingError(f"the model failed on this batch: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
