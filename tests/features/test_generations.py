from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from features.client import BackendUnavailable
from features.generations import GenerationSource, MemoryGenerations, RedisGenerations

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_generations(redis_url: str) -> Iterator[RedisGenerations]:
    gens = RedisGenerations(redis_url, namespace=f"mlcp_test_{uuid.uuid4().hex[:10]}")
    yield gens
    gens._redis.delete(*(key for key in gens._redis.scan_iter(f"{gens.namespace}:*")))
    gens.close()


def check_source(gens: GenerationSource) -> None:
    assert gens.current(["a", "b"]) == {"a": 0, "b": 0}
    assert gens.bump("a") == 1
    assert gens.bump("a") == 2
    assert gens.bump("b") == 1
    assert gens.current(["a", "b", "c"]) == {"a": 2, "b": 1, "c": 0}
    assert gens.current([]) == {}


def test_memory_generations_count_bumps_per_view() -> None:
    check_source(MemoryGenerations())


def test_redis_generations_count_bumps_per_view(redis_generations: RedisGenerations) -> None:
    check_source(redis_generations)
    assert redis_generations._redis.get(f"{redis_generations.namespace}:gen:a") == b"2"


def test_redis_generations_are_shared_across_processes(
    redis_generations: RedisGenerations, redis_url: str
) -> None:
    redis_generations.bump("user_stats__v1")
    script = (
        "import sys; from features.generations import RedisGenerations; "
        "print(RedisGenerations(sys.argv[1], sys.argv[2]).bump('user_stats__v1'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, redis_url, redis_generations.namespace],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == "2"
    assert redis_generations.current(["user_stats__v1"]) == {"user_stats__v1": 2}


def test_namespaces_do_not_share_counters(redis_url: str) -> None:
    one = RedisGenerations(redis_url, namespace=f"mlcp_test_{uuid.uuid4().hex[:10]}")
    two = RedisGenerations(redis_url, namespace=f"mlcp_test_{uuid.uuid4().hex[:10]}")
    try:
        one.bump("v")
        assert two.current(["v"]) == {"v": 0}
    finally:
        one._redis.delete(one.key("v"))
        one.close()
        two.close()


def test_unreachable_redis_is_backend_unavailable_and_fails_fast() -> None:
    gens = RedisGenerations("redis://127.0.0.1:1", timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"generations at redis://127\.0\.0\.1:1: read"):
        gens.current(["v"])
    with pytest.raises(BackendUnavailable, match="bump 'v'"):
        gens.bump("v")
    assert time.monotonic() - started < 5  # redis-py's default retries would take ~5 s each
