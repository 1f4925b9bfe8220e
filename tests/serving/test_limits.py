"""Clients, classes and token buckets (pure parts and the bucket map; an injected clock)."""

from __future__ import annotations

import pytest

from serving.config import BATCH, CRITICAL, NORMAL, ClientPolicy, RateLimit
from serving.limits import ClientLimits, client_of, take_token


def test_a_bucket_lets_a_burst_through_then_refills_at_the_rate() -> None:
    limit = RateLimit(rate_per_s=2, burst=3)
    bucket, waits = None, []
    for _ in range(4):
        bucket, wait_s = take_token(bucket, limit, now=10.0)
        waits.append(wait_s)
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.5)  # one token at 2/s
    assert bucket is not None
    assert take_token(bucket, limit, now=10.5)[1] == 0.0


def test_clients_are_named_by_id_then_token_digest_then_address() -> None:
    assert client_of({"x-client-id": "ci"}, "10.0.0.1") == "ci"
    token = client_of({"authorization": "Bearer s3cret"}, "10.0.0.1")
    assert token.startswith("token:")
    assert "s3cret" not in token
    assert client_of({}, "10.0.0.1") == "ip:10.0.0.1"


def test_a_configured_class_caps_what_the_header_asks_for() -> None:
    limits = ClientLimits(ClientPolicy(classes={"ci": "batch", "pager": "critical"}))
    assert limits.priority("ci", "critical") == BATCH
    assert limits.priority("ci", None) == BATCH
    assert limits.priority("pager", None) == CRITICAL
    assert limits.priority("pager", "batch") == BATCH  # asking for less is fine
    assert limits.priority("anyone", None) == NORMAL
    assert limits.priority("anyone", "Critical") == CRITICAL
    with pytest.raises(ValueError, match="X-Priority"):
        limits.priority("anyone", "urgent")


def test_limits_are_per_client_and_model_and_the_clients_own_wins() -> None:
    now = [0.0]
    policy = ClientPolicy(rate=RateLimit(1, 1), rates={"vip": RateLimit(100, 100)})
    limits = ClientLimits(policy, clock=lambda: now[0])
    assert limits.take("a", "churn") == 0.0
    assert limits.take("a", "churn") > 0  # over the default
    assert limits.take("a", "other") == 0.0  # another model: another bucket
    assert limits.take("b", "churn") == 0.0  # another client: unaffected
    assert all(limits.take("vip", "churn") == 0.0 for _ in range(50))
    model_rate = RateLimit(10, 10)
    assert all(limits.take("c", "churn", model_rate) == 0.0 for _ in range(10))


def test_bucket_count_is_bounded() -> None:
    limits = ClientLimits(ClientPolicy(rate=RateLimit(1, 1), max_clients=3))
    for i in range(10):
        limits.take(f"c{i}", "m")
    assert limits.take("c0", "m") == 0.0  # its bucket was dropped: a fresh one
