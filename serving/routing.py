"""Traffic split between a model's versions: canary weights, sticky by entity key, and shadow.

    route = choose(deployment, routing_key(b"customer_id=7"))
    route.primary     # the version that answers: champion, or challenger for its share
    route.shadow      # a version that gets a copy, or None

Pure functions: the same key always lands on the same version for a given canary share, and
raising the share only moves keys from champion to challenger, never back.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from serving.spec import Deployment

BUCKETS = 10_000  # canary shares in hundredths of a percent


@dataclass(frozen=True, slots=True)
class Route:
    primary: int
    shadow: int | None = None


def routing_key(text: str | bytes) -> int:
    """A stable bucket in ``[0, BUCKETS)`` for a key (same on every replica and process)."""
    data = text.encode() if isinstance(text, str) else text
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") % BUCKETS


def entity_routing_key(entity: Mapping[str, Any]) -> int:
    """The bucket of an entity, from its keys in name order: ``{"customer_id": 7}``."""
    return routing_key("&".join(f"{k}={entity[k]}" for k in sorted(entity)))


def random_key() -> int:
    """For requests without an entity: a uniform bucket, so the share still holds on average."""
    return random.randrange(BUCKETS)


def choose(deployment: Deployment, bucket: int) -> Route:
    """Which version answers a request whose key falls in ``bucket``, and who shadows it."""
    primary = deployment.champion
    if (
        deployment.challenger is not None and bucket < deployment.canary_percent * (BUCKETS // 100)
    ) or primary is None:
        primary = deployment.challenger
    if primary is None:
        raise ValueError(f"deployment of {deployment.name} has neither champion nor challenger")
    shadow = deployment.shadow if deployment.shadow not in (None, primary) else None
    return Route(primary, shadow)
