"""Who a request comes from, its priority class, and the per-client token buckets.

    limits = ClientLimits(ClientPolicy(rate=RateLimit(50, 100), classes={"ci": "batch"}))
    client = client_of(headers, peer="10.0.0.7")      # "ci", "token:3f2a...", "ip:10.0.0.7"
    priority = limits.priority(client, headers.get("x-priority"), model_default)
    retry_after_s = limits.take(client, model, model_rate)   # 0.0: go ahead; else 429

A client is named by its ``X-Client-ID`` header, else by its bearer token (a digest of it,
never the token), else by its address. Its class is what ``X-Priority`` says, capped by the
class configured for the client (``classes``): a client configured as ``batch`` can't make
itself ``critical``; a client without one may ask for any class (the header is for a
trusted network: configure the clients that are not). The bucket decision, `take_token`,
is a pure function of the bucket, the limit and the time.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from serving.config import NORMAL, PRIORITIES, ClientPolicy, RateLimit

CLIENT_HEADER = "x-client-id"
PRIORITY_HEADER = "x-priority"
MAX_CLIENT_ID = 128


@dataclass(slots=True)
class Bucket:
    tokens: float
    at: float


def take_token(bucket: Bucket | None, limit: RateLimit, now: float) -> tuple[Bucket, float]:
    """The bucket after one request at ``now``, and how long the client must wait before
    its next request can go (0.0: this one goes; else it is refused, nothing taken)."""
    if bucket is None:
        return Bucket(limit.size - 1.0, now), 0.0
    tokens = min(limit.size, bucket.tokens + (now - bucket.at) * limit.rate_per_s)
    if tokens >= 1.0:
        return Bucket(tokens - 1.0, now), 0.0
    return Bucket(tokens, now), (1.0 - tokens) / limit.rate_per_s


def client_of(headers: Mapping[str, str], peer: str | None) -> str:
    """The name a request's client goes by (see the module docstring)."""
    given = headers.get(CLIENT_HEADER)
    if given:
        return given[:MAX_CLIENT_ID]
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return "token:" + hashlib.sha256(auth[7:].strip().encode()).hexdigest()[:16]
    return f"ip:{peer or 'unknown'}"


def parse_priority(value: str | None) -> int | None:
    """A class name (any case) as its index, None when absent; ValueError when unknown."""
    if value is None or not value.strip():
        return None
    name = value.strip().lower()
    if name not in PRIORITIES:
        raise ValueError(f"X-Priority is {value!r}; give one of {', '.join(PRIORITIES)}")
    return PRIORITIES.index(name)


class ClientLimits:
    """Priority classes and token buckets of a replica's clients. Runs on the event loop
    (not thread-safe); buckets beyond ``max_clients`` are dropped least recently used."""

    def __init__(self, policy: ClientPolicy, clock: Callable[[], float] = time.monotonic):
        self.policy, self.clock = policy, clock
        self._buckets: OrderedDict[tuple[str, str], Bucket] = OrderedDict()

    def priority(self, client: str, asked: str | None, default: int = NORMAL) -> int:
        """The request's class: what it asked for (else ``default``, else the client's
        class), never more urgent than the client's configured class."""
        configured = self.policy.classes.get(client)
        ceiling = PRIORITIES.index(configured) if configured else 0
        wanted = parse_priority(asked)
        if wanted is None:
            wanted = ceiling if configured else default
        return max(wanted, ceiling)

    def limit_of(self, client: str, model_rate: RateLimit | None) -> RateLimit | None:
        """The client's own limit, else the model's (its policy), else the replica's."""
        return self.policy.rates.get(client) or model_rate or self.policy.rate

    def take(self, client: str, model: str, model_rate: RateLimit | None = None) -> float:
        """Charge one request of ``client`` to ``model``; seconds to wait (0.0: go)."""
        limit = self.limit_of(client, model_rate)
        if limit is None:
            return 0.0
        key = (client, model)
        bucket, wait_s = take_token(self._buckets.get(key), limit, self.clock())
        self._buckets[key] = bucket
        self._buckets.move_to_end(key)
        if len(self._buckets) > self.policy.max_clients:
            self._buckets.popitem(last=False)
        return wait_s
