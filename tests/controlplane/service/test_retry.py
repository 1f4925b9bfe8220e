"""When a remote call is tried again: the pure decision."""

from __future__ import annotations

import pytest

from controlplane.service.retry import MAX_DELAY_S, parse_retry_after, retry_delay


def test_backoff_doubles_and_is_capped() -> None:
    delays = [retry_delay(n, retries=10, repeatable=True, jitter=1.0) for n in range(1, 8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert max(d for d in delays if d is not None) == MAX_DELAY_S


def test_jitter_spreads_between_half_and_the_full_backoff() -> None:
    assert retry_delay(3, retries=5, repeatable=True, jitter=0.0) == 1.0
    assert retry_delay(3, retries=5, repeatable=True, jitter=1.0) == 2.0


def test_gives_up_after_the_retries_or_at_once_when_not_repeatable() -> None:
    assert retry_delay(3, retries=3, repeatable=True) is not None
    assert retry_delay(4, retries=3, repeatable=True) is None
    assert retry_delay(1, retries=3, repeatable=False) is None
    assert retry_delay(1, retries=0, repeatable=True) is None


def test_retry_after_is_a_floor_within_the_cap() -> None:
    assert retry_delay(1, retries=3, repeatable=True, retry_after_s=3, jitter=1.0) == 3.0
    assert retry_delay(1, retries=3, repeatable=True, retry_after_s=600) == MAX_DELAY_S


@pytest.mark.parametrize(
    ("header", "seconds"), [(None, None), ("2", 2.0), ("0.5", 0.5), ("soon", None), ("-1", None)]
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds
