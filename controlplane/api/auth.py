"""Bearer-token authentication and role checks, as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from controlplane.tokens import Principal

_bearer = HTTPBearer(auto_error=False)


def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    # The front door (controlplane.api.guard) authenticated the request before its body.
    found = getattr(request.state, "principal", None)
    if isinstance(found, Principal):
        return found
    if credentials is None:
        raise HTTPException(
            401,
            "send a token: Authorization: Bearer mlcp_... (`mlcp tokens create`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    found = request.app.state.cp.tokens.authenticate(credentials.credentials)
    if found is None:
        raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return found


def require(permission: str) -> Callable[[Principal], Principal]:
    """A dependency that lets through only principals whose role grants ``permission``."""

    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not who.can(permission):
            raise HTTPException(403, f"role {who.role!r} may not {permission}")
        return who

    check.permission = permission  # type: ignore[attr-defined]  # read by the route audit test
    return check
