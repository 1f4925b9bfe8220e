"""The audit log: append-only, one row per state change, each row carrying its predecessor's hash.

Appends lock the chain's head row, so concurrent writers queue instead of forking the
chain; the database refuses UPDATE and DELETE on ``mlcp_audit_log`` (triggers). ``verify``
recomputes every hash, so an edited, inserted or deleted row is caught even when the
triggers were bypassed by someone with owner rights. Anchor the head hash that
``verify`` prints somewhere outside the database to detect a rewrite of the whole tail.

    with session.begin():
        append(session, actor="ci", action="model.register", subject="churn@3", after={...})
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.db.models import GENESIS_HASH, AuditHead, AuditRow

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


# What each row's hash covers, in this order; `hash` itself completes the row.
HASHED_FIELDS = (
    "seq",
    "ts",
    "actor",
    "action",
    "subject",
    "before",
    "after",
    "reason",
    "evidence",
    "prev_hash",
)
FIELDS = (*HASHED_FIELDS, "hash")


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit log, as read back."""

    seq: int
    ts: datetime
    actor: str
    action: str
    subject: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    reason: str | None
    evidence: Mapping[str, Any] | None
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        out = {f: getattr(self, f) for f in FIELDS}
        out["ts"] = _ts(self.ts)
        return out


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    rows: int
    head_hash: str
    bad_seq: int | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def row_hash(row: AuditRow | AuditEntry) -> str:
    """sha256 over the row's canonical JSON, its predecessor's hash included."""
    body = {f: getattr(row, f) for f in HASHED_FIELDS}
    body["ts"] = _ts(row.ts)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    reason: str | None = None,
    evidence: Mapping[str, Any] | None = None,
    clock: Clock = utcnow,
) -> AuditEntry:
    """Append one row inside the caller's transaction, so it commits with the change it records."""
    head = session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one()
    row = AuditRow(
        seq=head.seq + 1,
        ts=as_utc(clock()),
        actor=actor,
        action=action,
        subject=subject,
        # JSON round-trip now, so the hash covers exactly what the database hands back.
        before=_jsonable(before),
        after=_jsonable(after),
        reason=reason,
        evidence=_jsonable(evidence),
        prev_hash=head.hash,
    )
    row.hash = row_hash(row)
    session.add(row)
    head.seq, head.hash = row.seq, row.hash
    session.flush()
    return _entry(row)


def entries(
    session: Session,
    *,
    subject: str | None = None,
    action: str | None = None,
    limit: int | None = None,
) -> list[AuditEntry]:
    """Rows newest first, optionally filtered by subject (exact or ``name@*``) and action."""
    query = select(AuditRow).order_by(AuditRow.seq.desc())
    if subject is not None:
        if subject.endswith("@*"):
            query = query.where(AuditRow.subject.startswith(subject[:-1], autoescape=True))
        else:
            query = query.where(AuditRow.subject == subject)
    if action is not None:
        query = query.where(AuditRow.action == action)
    if limit is not None:
        query = query.limit(limit)
    return [_entry(r) for r in session.execute(query).scalars()]


def verify(session: Session, batch: int = 1000) -> VerifyResult:
    """Walk the chain from genesis; report the first row that does not verify."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    for row in _stream(session, batch):
        count += 1
        if row.seq != expected_seq:
            return _broken(count, head, expected_seq, f"row {expected_seq} is missing")
        if row.prev_hash != prev_hash:
            return _broken(count, head, row.seq, "its prev_hash does not match the row before")
        if row_hash(row) != row.hash:
            return _broken(count, head, row.seq, "its content was changed after it was written")
        prev_hash, expected_seq = row.hash, row.seq + 1
    if head.seq != expected_seq - 1 or head.hash != prev_hash:
        return _broken(
            count,
            head,
            expected_seq,
            f"the head says row {head.seq}, the log ends at row "
            f"{expected_seq - 1}: rows were deleted from the end",
        )
    return VerifyResult(ok=True, rows=count, head_hash=head.hash)


def _stream(session: Session, batch: int) -> Iterator[AuditRow]:
    last = 0
    while True:
        rows = list(
            session.execute(
                select(AuditRow).where(AuditRow.seq > last).order_by(AuditRow.seq).limit(batch)
            ).scalars()
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def _broken(rows: int, head: AuditHead, seq: int, problem: str) -> VerifyResult:
    return VerifyResult(ok=False, rows=rows, head_hash=head.hash, bad_seq=seq, problem=problem)


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(**{f: getattr(row, f) for f in FIELDS})


def _jsonable(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else json.loads(json.dumps(value, default=str))


def as_utc(ts: datetime) -> datetime:
    """Aware UTC. SQLite hands back naive datetimes; every timestamp we write is UTC."""
    return (ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)).astimezone(UTC)


def _ts(ts: datetime) -> str:
    return as_utc(ts).isoformat(timespec="microseconds")
