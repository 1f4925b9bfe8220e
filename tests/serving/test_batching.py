"""The batch-collection decision (pure, no clock) and the batcher around it."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import torch

from serving.batching import (
    Admission,
    DynamicBatcher,
    Pending,
    PreparedBatch,
    admit,
    collect_batch,
    overtakes,
)
from serving.config import BATCH, CRITICAL, NORMAL, BatchingConfig
from serving.errors import DeadlineExceeded, InvalidInput, ModelNotReady, Overloaded, Shed

CONFIG = BatchingConfig(max_batch_size=4, max_delay_ms=10.0, max_queue=8)


def pending(at: float, rows: int = 1, deadline: float = 100.0) -> Pending[str]:
    return Pending(f"r{at}", rows, at, deadline)


def test_batch_waits_until_max_delay_after_its_first_request() -> None:
    queue = [pending(0.000), pending(0.004)]
    decision = collect_batch(queue, CONFIG, now=0.005)
    assert decision.batch == ()
    assert decision.wait_s == pytest.approx(0.005)


def test_batch_closes_at_max_delay() -> None:
    queue = [pending(0.000), pending(0.004)]
    decision = collect_batch(queue, CONFIG, now=0.010)
    assert [p.payload for p in decision.batch] == ["r0.0", "r0.004"]


def test_batch_closes_when_full_without_waiting() -> None:
    queue = [pending(0.001 * i) for i in range(6)]
    decision = collect_batch(queue, CONFIG, now=0.006)
    assert len(decision.batch) == 4
    assert decision.wait_s is None


def test_batch_closes_when_the_next_request_does_not_fit() -> None:
    queue = [pending(0.0, rows=3), pending(0.001, rows=2)]
    decision = collect_batch(queue, CONFIG, now=0.002)
    assert [p.rows for p in decision.batch] == [3]


def test_request_larger_than_max_batch_runs_alone() -> None:
    decision = collect_batch([pending(0.0, rows=10), pending(0.0)], CONFIG, now=0.0)
    assert [p.rows for p in decision.batch] == [10]


def test_expired_requests_fail_without_computing() -> None:
    late = pending(0.0, deadline=0.004)
    decision = collect_batch([late, pending(0.001)], CONFIG, now=0.005)
    assert decision.expired == (late,)
    assert decision.batch == ()


def test_request_that_cannot_make_its_deadline_expires_before_compute() -> None:
    # Compute takes 3 ms: a request due in 2 ms is failed now rather than answered late.
    doomed = pending(0.0, deadline=0.002)
    decision = collect_batch([doomed], CONFIG, now=0.0, estimate_s=0.003)
    assert decision.expired == (doomed,)


def test_batch_closes_early_to_meet_a_members_deadline() -> None:
    queue = [pending(0.0, deadline=0.006)]
    assert collect_batch(queue, CONFIG, now=0.004, estimate_s=0.001).batch == ()
    assert len(collect_batch(queue, CONFIG, now=0.005, estimate_s=0.001).batch) == 1


def test_wait_wakes_for_a_queued_request_that_would_expire() -> None:
    # The head's batch is due at 10 ms, but a request beyond the batch expires at 3 ms.
    queue = [pending(0.0, rows=4), pending(0.0, deadline=0.003)]
    decision = collect_batch(queue[1:], CONFIG, now=0.0)
    assert decision.wait_s == pytest.approx(0.003)


def test_empty_queue_waits_for_arrivals() -> None:
    assert collect_batch([], CONFIG, now=1.0).wait_s is None


# -- the batcher ---------------------------------------------------------------------------


def concat(payloads: list[torch.Tensor]) -> PreparedBatch:
    return PreparedBatch(torch.cat(payloads))


def split(outputs: torch.Tensor, rows: list[int]) -> list[torch.Tensor]:
    return list(torch.split(outputs, rows))


class Compute:
    """Doubles its input; can be held to pile requests up behind it."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        self.entered.set()
        assert self.release.wait(30)
        return x * 2


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_batcher_answers_each_request_with_its_own_rows() -> None:
    async def main() -> None:
        compute = Compute()
        batcher = DynamicBatcher("m@1", concat, compute, split, BatchingConfig(8, 5.0, 64))
        batcher.start()
        futures = [
            batcher.submit(torch.full((1, 2), float(i)), 1, deadline=1e12, budget_ms=1e3)
            for i in range(20)
        ]
        results = await asyncio.gather(*futures)
        await batcher.drain()
        assert [float(r[0, 0]) for r in results] == [2.0 * i for i in range(20)]
        assert max(compute.batches) <= 8
        assert sum(compute.batches) == 20

    run(main())


def test_full_queue_is_overloaded_with_retry_after() -> None:
    async def main() -> None:
        compute = Compute()
        compute.release.clear()
        config = BatchingConfig(max_batch_size=1, max_delay_ms=0, max_queue=2, retry_after_s=3)
        batcher = DynamicBatcher("m@1", concat, compute, split, config)
        batcher.start()
        first = batcher.submit(torch.ones(1, 2), 1, 1e12, 1e3)
        await asyncio.to_thread(compute.entered.wait, 30)  # the first is computing
        queued = []
        try:
            refused: Overloaded | None = None
            for _ in range(10):
                try:
                    queued.append(batcher.submit(torch.ones(1, 2), 1, 1e12, 1e3))
                except Overloaded as exc:
                    refused = exc
                    break
                await asyncio.sleep(0)  # let the collector take what it can
            assert refused is not None
            assert refused.retry_after_s == 3
            assert batcher.depth == 2
        finally:
            compute.release.set()
        await asyncio.gather(first, *queued)
        await batcher.drain()

    run(main())


def test_expired_request_gets_deadline_exceeded_and_no_compute() -> None:
    async def main() -> None:
        compute = Compute()
        compute.release.clear()
        now = [0.0]
        config = BatchingConfig(max_batch_size=1, max_delay_ms=0, max_queue=8)
        batcher = DynamicBatcher("m@1", concat, compute, split, config, clock=lambda: now[0])
        batcher.start()
        first = batcher.submit(torch.ones(1, 2), 1, deadline=100.0, budget_ms=1e5)
        await asyncio.to_thread(compute.entered.wait, 30)
        doomed = batcher.submit(torch.ones(1, 2), 1, deadline=1.0, budget_ms=1e3)
        now[0] = 2.0  # the second request's deadline passes while the first computes
        compute.release.set()
        await first
        with pytest.raises(DeadlineExceeded):
            await doomed
        await batcher.drain()
        assert compute.batches == [1]
        assert batcher.stats.expired == 1

    run(main())


def test_drain_answers_every_queued_request_and_refuses_new_ones() -> None:
    async def main() -> None:
        compute = Compute()
        compute.release.clear()
        batcher = DynamicBatcher("m@1", concat, compute, split, BatchingConfig(2, 1.0, 64))
        batcher.start()
        futures = [batcher.submit(torch.ones(1, 2), 1, 1e12, 1e3) for _ in range(9)]
        await asyncio.to_thread(compute.entered.wait, 30)
        drained = asyncio.create_task(batcher.drain())
        await asyncio.sleep(0)
        with pytest.raises(ModelNotReady):
            batcher.submit(torch.ones(1, 2), 1, 1e12, 1e3)
        compute.release.set()
        await drained
        assert all(f.done() and f.exception() is None for f in futures)

    run(main())


def test_prepare_error_fails_only_its_request() -> None:
    def prepare(payloads: list[Any]) -> PreparedBatch:
        errors: list[InvalidInput | None] = []
        parts, counts = [], []
        for p in payloads:
            if p is None:
                errors.append(InvalidInput("bad keys"))
                counts.append(0)
            else:
                errors.append(None)
                parts.append(p)
                counts.append(p.shape[0])
        return PreparedBatch(torch.cat(parts), errors, counts)

    async def main() -> None:
        compute = Compute()
        compute.release.clear()
        batcher = DynamicBatcher("m@1", prepare, compute, split, BatchingConfig(8, 1.0, 64))
        batcher.start()
        blocker = batcher.submit(torch.ones(1, 2), 1, 1e12, 1e3)
        await asyncio.to_thread(compute.entered.wait, 30)
        good = batcher.submit(torch.full((2, 2), 3.0), 2, 1e12, 1e3)
        bad = batcher.submit(None, 1, 1e12, 1e3)
        also_good = batcher.submit(torch.full((1, 2), 5.0), 1, 1e12, 1e3)
        compute.release.set()
        await blocker
        assert (await good).tolist() == [[6.0, 6.0], [6.0, 6.0]]
        assert (await also_good).tolist() == [[10.0, 10.0]]
        with pytest.raises(InvalidInput):
            await bad
        await batcher.drain()

    run(main())


def test_next_batch_is_prepared_while_this_one_computes() -> None:
    prepared_during_compute = threading.Event()
    compute = Compute()

    def prepare(payloads: list[torch.Tensor]) -> PreparedBatch:
        if compute.entered.is_set() and not compute.release.is_set():
            prepared_during_compute.set()
        return PreparedBatch(torch.cat(payloads))

    async def main() -> None:
        from concurrent.futures import ThreadPoolExecutor

        compute.release.clear()
        pool = ThreadPoolExecutor(1)
        batcher = DynamicBatcher(
            "m@1",
            prepare,
            compute,
            split,
            BatchingConfig(1, 0.0, 64),
            prepare_in_thread=lambda _: True,
            prepare_pool=pool,
        )
        batcher.start()
        first = batcher.submit(torch.ones(1, 2), 1, 1e12, 1e3)
        await asyncio.to_thread(compute.entered.wait, 30)
        second = batcher.submit(torch.ones(1, 2), 1, 1e12, 1e3)
        # The second batch's prepare (the feature fetch) runs while the first is computing.
        assert await asyncio.to_thread(prepared_during_compute.wait, 30)
        compute.release.set()
        await asyncio.gather(first, second)
        await batcher.drain()
        pool.shutdown()

    run(main())


def test_idle_model_takes_the_batch_at_once() -> None:
    queue = [pending(0.0)]
    assert len(collect_batch(queue, CONFIG, now=0.0, idle=True).batch) == 1
    assert collect_batch(queue, CONFIG, now=0.0, idle=False).batch == ()


def test_idle_close_can_be_turned_off() -> None:
    waits = BatchingConfig(max_batch_size=4, max_delay_ms=10.0, close_when_idle=False)
    assert collect_batch([pending(0.0)], waits, now=0.0, idle=True).batch == ()


# -- priority classes ----------------------------------------------------------------------

FAR = time.monotonic() + 3600  # a deadline no test reaches
CLASSES = BatchingConfig(max_batch_size=4, max_queue=10, class_shares=(1.0, 0.8, 0.5))


def test_each_class_queues_up_to_its_share_of_the_queue() -> None:
    assert admit([0, 0, 4], BATCH, CLASSES) == Admission(True)
    assert admit([0, 2, 3], BATCH, CLASSES) == Admission(False)  # 5 queued: batch's share
    assert admit([0, 7, 0], NORMAL, CLASSES) == Admission(True)
    assert admit([2, 6, 0], NORMAL, CLASSES) == Admission(False)


def test_a_full_queue_sheds_the_newest_of_the_least_urgent_class_for_a_higher_one() -> None:
    assert admit([2, 3, 5], CRITICAL, CLASSES) == Admission(True, shed=BATCH)
    assert admit([2, 8, 0], CRITICAL, CLASSES) == Admission(True, shed=NORMAL)
    assert admit([3, 2, 3], NORMAL, CLASSES) == Admission(True, shed=BATCH)
    assert admit([10, 0, 0], CRITICAL, CLASSES) == Admission(False)


def test_a_more_urgent_queue_overtakes_a_prepared_batch_of_lower_classes() -> None:
    staged = [Pending("b", 1, 0.0, 1.0, priority=BATCH), Pending("n", 1, 0.0, 1.0)]
    assert overtakes(CRITICAL, staged)
    assert not overtakes(NORMAL, staged)  # a normal request is in it already
    assert not overtakes(None, staged)


async def until(condition: Any, timeout_s: float = 10.0) -> None:
    """Let the batcher's loops run until ``condition()`` holds (poll, never a guessed sleep)."""
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "timed out waiting for the batcher"
        await asyncio.sleep(0.001)


def test_batches_fill_from_the_most_urgent_class_and_shed_lower_ones() -> None:
    gate, entered = threading.Event(), threading.Event()
    order: list[str] = []

    def compute(x: Any) -> Any:
        entered.set()
        gate.wait(10)
        return x

    def prepare(payloads: list[str]) -> PreparedBatch:
        order.extend(payloads)
        return PreparedBatch(torch.zeros(len(payloads), 1))

    config = BatchingConfig(max_batch_size=2, max_delay_ms=0, max_queue=4)

    async def run() -> list[Any]:
        batcher: DynamicBatcher[str] = DynamicBatcher(
            "m@1", prepare, compute, lambda out, rows: list(out.split(rows)), config
        )
        batcher.start()
        first = batcher.submit("first", 1, FAR, 1e5, BATCH)  # runs now, holds the model
        await until(entered.is_set)
        futures = [batcher.submit(f"b{i}", 1, FAR, 1e5, BATCH) for i in range(2)]
        await until(lambda: batcher.depth == 0)  # b0, b1 are prepared and staged
        futures += [batcher.submit(f"n{i}", 1, FAR, 1e5, NORMAL) for i in range(2)]
        futures += [batcher.submit(f"c{i}", 1, FAR, 1e5, CRITICAL) for i in range(2)]
        gate.set()
        return await asyncio.gather(first, *futures, return_exceptions=True)

    results = asyncio.run(run())
    assert not any(isinstance(r, BaseException) for r in results), results
    # The critical pair overtook the staged batch pair, then normal went, batch last.
    assert order == ["first", "b0", "b1", "c0", "c1", "n0", "n1"]
    assert order.index("c0") < order.index("n0")


def test_a_full_queue_answers_a_critical_request_by_shedding_a_batch_one() -> None:
    gate = threading.Event()

    def compute(x: Any) -> Any:
        gate.wait(10)
        return x

    config = BatchingConfig(max_batch_size=1, max_delay_ms=0, max_queue=2)

    async def run() -> tuple[Any, ...]:
        batcher: DynamicBatcher[str] = DynamicBatcher(
            "m@1",
            lambda p: PreparedBatch(torch.zeros(len(p), 1)),
            compute,
            lambda out, rows: [out],
            config,
        )
        batcher.start()
        held = [batcher.submit(f"h{i}", 1, FAR, 1e5, NORMAL) for i in range(2)]
        await until(lambda: batcher.depth == 0)  # one computes, one is staged
        queued = [batcher.submit(f"q{i}", 1, FAR, 1e5, BATCH) for i in range(1)]
        with pytest.raises(Overloaded, match="batch-class"):
            batcher.submit("over", 1, FAR, 1e5, BATCH)  # batch's share (1 of 2) is used
        critical = [batcher.submit(f"c{i}", 1, FAR, 1e5, CRITICAL) for i in range(2)]
        gate.set()
        out = await asyncio.gather(*held, *queued, *critical, return_exceptions=True)
        return tuple(out), batcher.stats.shed

    results, shed = asyncio.run(run())
    assert isinstance(results[2], Shed)  # the queued batch request made room
    assert shed == 1
    assert not any(isinstance(r, BaseException) for r in results[3:])
