"""The audit log: appends chain, the database refuses edits, verify catches tampering."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.orm import Session, sessionmaker

from controlplane import audit
from controlplane.db import migrate
from controlplane.db.engine import make_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cp.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    engine = make_engine(url)
    migrate.upgrade(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, 12, 0, 0, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def write(sessions: sessionmaker[Session], n: int, clock: FakeClock | None = None) -> None:
    for i in range(n):
        with sessions.begin() as s:
            audit.append(
                s,
                actor="ci",
                action="model.register",
                subject=f"churn@{i + 1}",
                after={"state": "registered", "metrics": {"auc": 0.9 + i / 100}},
                reason="registered",
                evidence={"run_id": f"r{i}", "nested": [1, 2.5, None, "x"]},
                clock=clock or FakeClock(),
            )


def raw(sessions: sessionmaker[Session], sql: str) -> None:
    """Tamper as someone with owner rights would: with the append-only triggers out of the way."""
    with sessions.begin() as s:
        dialect = s.get_bind().dialect.name
        if dialect == "postgresql":
            s.execute(sqlalchemy.text("ALTER TABLE mlcp_audit_log DISABLE TRIGGER USER"))
        else:
            s.execute(sqlalchemy.text("DROP TRIGGER mlcp_audit_log_no_update"))
            s.execute(sqlalchemy.text("DROP TRIGGER mlcp_audit_log_no_delete"))
        s.execute(sqlalchemy.text(sql))


def verify(sessions: sessionmaker[Session]) -> audit.VerifyResult:
    with sessions() as s:
        return audit.verify(s)


def test_chain_links_each_row_to_the_one_before(sessions) -> None:
    write(sessions, 3, FakeClock())
    with sessions() as s:
        rows = list(reversed(audit.entries(s)))
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == "0" * 64
    assert rows[1].prev_hash == rows[0].hash
    assert rows[2].prev_hash == rows[1].hash
    assert rows[0].evidence == {"run_id": "r0", "nested": [1, 2.5, None, "x"]}
    result = verify(sessions)
    assert (result.ok, result.rows, result.head_hash) == (True, 3, rows[2].hash)


def test_entries_filter_by_subject_prefix_and_action(sessions) -> None:
    write(sessions, 3)
    with sessions() as s:
        assert [e.subject for e in audit.entries(s, subject="churn@2")] == ["churn@2"]
        assert len(audit.entries(s, subject="churn@*")) == 3
        assert audit.entries(s, action="model.promote") == []
        assert len(audit.entries(s, limit=2)) == 2


@pytest.mark.parametrize(
    "statement", ["UPDATE mlcp_audit_log SET actor = 'x'", "DELETE FROM mlcp_audit_log"]
)
def test_database_refuses_update_and_delete(sessions, statement: str) -> None:
    write(sessions, 1)
    with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"), sessions.begin() as s:
        s.execute(sqlalchemy.text(statement))
    assert verify(sessions).ok


def test_verify_catches_an_edited_row(sessions) -> None:
    write(sessions, 4)
    raw(sessions, "UPDATE mlcp_audit_log SET reason = 'nothing to see' WHERE seq = 2")
    result = verify(sessions)
    assert (result.ok, result.bad_seq) == (False, 2)
    assert result.problem is not None
    assert "changed" in result.problem


def test_verify_catches_an_edited_evidence_field(sessions) -> None:
    write(sessions, 2)
    raw(sessions, """UPDATE mlcp_audit_log SET evidence = '{"run_id": "forged"}' WHERE seq = 1""")
    assert verify(sessions).bad_seq == 1


def test_verify_catches_a_deleted_row(sessions) -> None:
    write(sessions, 4)
    raw(sessions, "DELETE FROM mlcp_audit_log WHERE seq = 3")
    result = verify(sessions)
    assert (result.ok, result.bad_seq) == (False, 3)


def test_verify_catches_deleted_tail_rows(sessions) -> None:
    write(sessions, 4)
    raw(sessions, "DELETE FROM mlcp_audit_log WHERE seq >= 3")
    result = verify(sessions)
    assert not result.ok
    assert result.problem is not None
    assert "deleted from the end" in result.problem


def test_concurrent_appends_keep_one_chain(sessions) -> None:
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(10):
                with sessions.begin() as s:
                    audit.append(s, actor=f"w{k}", action="test", subject=f"s{k}@{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    result = verify(sessions)
    assert (result.ok, result.rows) == (True, 60)


def test_an_append_rolled_back_with_its_transaction_leaves_no_trace(sessions) -> None:
    write(sessions, 1)

    def promote_then_fail() -> None:
        with sessions.begin() as s:
            audit.append(s, actor="ci", action="model.promote", subject="churn@1")
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError):
        promote_then_fail()
    result = verify(sessions)
    assert (result.ok, result.rows) == (True, 1)
