"""The control API's front door, before any route runs: the token, then the body's size.

    app.add_middleware(Guard, tokens=cp.tokens, max_body_bytes=4 << 20)

A request without a valid token is answered 401 before a byte of its body is read (FastAPI
parses a body before it resolves a route's dependencies, so a role check alone came too
late: a broken body without a token got 422). Every body but an upload's (which streams to
disk under its own bound) is read here, at most ``max_body_bytes`` of it, then handed on;
past the bound the answer is 413. The principal found goes in the request's state, where
`controlplane.api.auth.principal` takes it without a second lookup.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from controlplane.tokens import Principal, TokenStore

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Routes anyone may call: liveness and the API's own description.
OPEN_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect"})
STREAMED_PREFIX = "/v1/uploads/"  # bounded by MLCP_API_MAX_UPLOAD_MB as it streams to disk
NO_TOKEN = "send a token: Authorization: Bearer mlcp_... (`mlcp tokens create`)"
BAD_TOKEN = "unknown or revoked token"
# PostgreSQL stores no NUL character in text: refused here, not as a database error.
NUL = "the request holds a NUL character (\\u0000, %00), which no field takes"


class Guard:
    """Pure ASGI middleware: authenticate, then bound and buffer the body."""

    def __init__(self, app: Any, tokens: TokenStore, max_body_bytes: int) -> None:
        self.app = app
        self.tokens = tokens
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        found = await self._principal(headers.get(b"authorization", b""), send)
        if found is None:
            return
        scope.setdefault("state", {})["principal"] = found
        if "\0" in scope["path"] or b"%00" in scope.get("query_string", b""):
            await _error(send, 422, "InvalidRequest", NUL, {})
            return
        if scope["path"].startswith(STREAMED_PREFIX):
            await self.app(scope, receive, send)
            return
        length = headers.get(b"content-length", b"")
        if length and (not length.isdigit() or int(length) > self.max_body_bytes):
            await self._too_large(send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await self._too_large(send)
                return
        if b"\\u0000" in body:
            await _error(send, 422, "InvalidRequest", NUL, {})
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: a disconnect, when it comes

        await self.app(scope, replay, send)

    async def _principal(self, header: bytes, send: Send) -> Principal | None:
        scheme, _, token = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            await _error(send, 401, "HTTPError", NO_TOKEN, {"www-authenticate": "Bearer"})
            return None
        try:
            found = await run_in_threadpool(self.tokens.authenticate, token.strip())
        except SQLAlchemyError as exc:
            why = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            message = f"the control-plane database failed ({why}); retry later"
            await _error(send, 503, "DatabaseUnavailable", message, {"retry-after": "5"})
            return None
        if found is None:
            await _error(send, 401, "HTTPError", BAD_TOKEN, {"www-authenticate": "Bearer"})
        return found

    async def _too_large(self, send: Send) -> None:
        message = (
            f"the body is over {self.max_body_bytes} bytes (MLCP_API_MAX_BODY_KB); send a "
            "model as an upload (PUT /v1/uploads/<sha256>/<name>, POST /v1/registrations)"
        )
        await _error(send, 413, "PayloadTooLarge", message, {"connection": "close"})


async def _error(send: Send, status: int, kind: str, message: str, headers: dict[str, str]) -> None:
    body = json.dumps({"error": {"type": kind, "message": message}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
