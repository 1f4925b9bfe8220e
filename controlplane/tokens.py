"""API tokens with roles. Only a token's sha256 is stored; the token is shown once.

token = tokens.create("ci", role="promoter", actor="admin")   # mlcp_...
tokens.authenticate(token).role == "promoter"
tokens.entries()   # [{"id", "name", "role", "created_by", "created_at", "revoked_at"}, ...]
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controlplane import audit
from controlplane.db.models import ApiTokenRow
from controlplane.errors import ControlPlaneError

# What each role may do. Reading is everyone's; writing is split so a CI token that can
# promote cannot rewrite the policy it is judged by.
# A promoter is what CI runs as: it registers, evaluates, promotes and rolls back, all
# under a policy only an admin sets.
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "data-scientist": frozenset({"read", "upload", "register", "evaluate"}),
    "promoter": frozenset({"read", "upload", "register", "evaluate", "promote", "approve"}),
    "admin": frozenset(
        {"read", "upload", "register", "evaluate", "promote", "approve", "policy", "tokens"}
    ),
}
ROLES = tuple(PERMISSIONS)
PREFIX = "mlcp_"


class InvalidRole(ControlPlaneError):
    """A role that does not exist."""

    def __init__(self, role: str) -> None:
        super().__init__(f"unknown role {role!r}; use one of {', '.join(ROLES)}")


class TokenNotFound(ControlPlaneError):
    """No active token with that id."""

    def __init__(self, token_id: int) -> None:
        self.token_id = token_id
        super().__init__(f"no active token {token_id}; `mlcp tokens list` shows the active ones")


@dataclass(frozen=True)
class Principal:
    """Who a token speaks for."""

    token_id: int
    name: str
    role: str

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, frozenset())


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(
        self, sessions: sessionmaker[Session], clock: Callable[[], datetime] = audit.utcnow
    ) -> None:
        self.sessions = sessions
        self.clock = clock

    def create(self, name: str, role: str, actor: str) -> tuple[int, str]:
        """A new token for ``role``: returns (id, token). The token is not stored anywhere."""
        if role not in PERMISSIONS:
            raise InvalidRole(role)
        token = PREFIX + secrets.token_urlsafe(32)
        with self.sessions.begin() as session:
            row = ApiTokenRow(
                name=name,
                token_sha256=_digest(token),
                role=role,
                created_by=actor,
                created_at=self.clock(),
            )
            session.add(row)
            session.flush()
            audit.append(
                session,
                actor=actor,
                action="token.create",
                subject=f"token:{row.id}",
                after={"name": name, "role": role},
                reason="token created",
                clock=self.clock,
            )
            return row.id, token

    def revoke(self, token_id: int, actor: str) -> bool:
        with self.sessions.begin() as session:
            row = session.get(ApiTokenRow, token_id)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = self.clock()
            audit.append(
                session,
                actor=actor,
                action="token.revoke",
                subject=f"token:{token_id}",
                before={"role": row.role},
                reason="token revoked",
                clock=self.clock,
            )
            return True

    def entries(self, include_revoked: bool = False) -> list[dict[str, Any]]:
        """Every token's id, owner, role and dates, oldest first; never the token or its hash."""
        query = select(ApiTokenRow).order_by(ApiTokenRow.id)
        if not include_revoked:
            query = query.where(ApiTokenRow.revoked_at.is_(None))
        with self.sessions() as session:
            rows = session.execute(query).scalars().all()
        return [
            {
                "id": r.id,
                "name": r.name,
                "role": r.role,
                "created_by": r.created_by,
                "created_at": r.created_at.isoformat(),
                "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
            }
            for r in rows
        ]

    def authenticate(self, token: str) -> Principal | None:
        if not token.startswith(PREFIX):
            return None
        with self.sessions() as session:
            row = session.execute(
                select(ApiTokenRow).where(ApiTokenRow.token_sha256 == _digest(token))
            ).scalar_one_or_none()
        if row is None or row.revoked_at is not None:
            return None
        return Principal(token_id=row.id, name=row.name, role=row.role)
