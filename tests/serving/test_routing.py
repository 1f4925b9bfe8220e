"""Traffic split: canary share by entity hash, sticky, monotonic; shadow never answers."""

from __future__ import annotations

import pytest

from serving.routing import BUCKETS, choose, entity_routing_key, routing_key
from serving.spec import Deployment


def test_same_entity_always_lands_on_the_same_bucket() -> None:
    assert entity_routing_key({"customer_id": 7}) == entity_routing_key({"customer_id": 7})
    assert entity_routing_key({"a": 1, "b": 2}) == entity_routing_key({"b": 2, "a": 1})
    assert 0 <= routing_key("x") < BUCKETS


def test_canary_share_holds_over_many_entities() -> None:
    deployment = Deployment("churn", champion=1, challenger=2, canary_percent=10)
    routes = [choose(deployment, entity_routing_key({"customer_id": i})) for i in range(20_000)]
    share = sum(r.primary == 2 for r in routes) / len(routes)
    assert share == pytest.approx(0.10, abs=0.01)


def test_raising_the_share_only_moves_entities_to_the_challenger() -> None:
    keys = [entity_routing_key({"customer_id": i}) for i in range(5_000)]
    at_10 = [choose(Deployment("m", 1, 2, 10), k).primary for k in keys]
    at_30 = [choose(Deployment("m", 1, 2, 30), k).primary for k in keys]
    assert all(after == 2 for before, after in zip(at_10, at_30, strict=True) if before == 2)
    assert sum(v == 2 for v in at_30) > sum(v == 2 for v in at_10)


def test_no_challenger_means_champion_answers_everything() -> None:
    deployment = Deployment("m", champion=1)
    assert {choose(deployment, k).primary for k in range(0, BUCKETS, 7)} == {1}


def test_shadow_gets_a_copy_but_never_answers() -> None:
    route = choose(Deployment("m", champion=1, shadow=3), bucket=5)
    assert (route.primary, route.shadow) == (1, 3)


def test_challenger_alone_answers_everything() -> None:
    assert choose(Deployment("m", champion=None, challenger=2, canary_percent=5), 9999).primary == 2


def test_canary_percent_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"0\.\.100"):
        Deployment("m", 1, 2, 101)
