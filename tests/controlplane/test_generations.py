from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from controlplane.db import migrate
from controlplane.db.engine import make_engine
from controlplane.generations import DbGenerations


@pytest.fixture(params=["sqlite", "postgresql"])
def generations(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DbGenerations]:
    url = (
        f"sqlite:///{tmp_path / 'cp.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    engine = make_engine(url)
    migrate.upgrade(engine)
    yield DbGenerations(sessionmaker[Session](engine, expire_on_commit=False))
    engine.dispose()


def test_unknown_views_are_generation_zero(generations: DbGenerations) -> None:
    assert generations.current(["a__v1", "b__v1"]) == {"a__v1": 0, "b__v1": 0}


def test_bump_moves_only_that_view(generations: DbGenerations) -> None:
    assert generations.bump("a__v1") == 1
    assert generations.bump("a__v1") == 2
    assert generations.current(["a__v1", "b__v1"]) == {"a__v1": 2, "b__v1": 0}


def test_concurrent_bumps_are_not_lost(generations: DbGenerations) -> None:
    def bump_many() -> None:
        for _ in range(10):
            generations.bump("hot__v1")

    threads = [threading.Thread(target=bump_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert generations.current(["hot__v1"]) == {"hot__v1": 40}
