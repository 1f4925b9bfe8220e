"""`ControlService` over the control API: the CLI in remote mode (``MLCP_API_URL``,
``MLCP_TOKEN``). The process imports neither mlflow, feast, Great Expectations nor
SQLAlchemy; a registration exports the model here with torch and uploads the archive, an
evaluation uploads its data, and the server does the rest as the token's owner.

    service = RemoteService("http://mlcp.internal:8080", token)
    service.promote("churn@3")["outcome"]

Errors come back as the server's message, mapped to the CLI's exit codes like the local
errors they stand for (`ApiRefused` 1, `ApiError` 2, `ApiFailed` 3, `ApiUnavailable` 4,
`ApiDenied` 5). Connection failures and ``503`` are retried per `retry_delay`.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from controlplane.errors import ApiDenied, ApiError, ApiFailed, ApiRefused, ApiUnavailable
from controlplane.service.base import (
    CANARY_ACTIONS,
    EvaluateFiles,
    Json,
    Progress,
    RegisterFiles,
    silent,
)
from controlplane.service.retry import parse_retry_after, retry_delay
from controlplane.uploads import file_sha256, upload_name

if TYPE_CHECKING:
    from controlplane.policy import Policy
    from controlplane.settings import Settings

Body = bytes | Path


class RemoteService:
    """The control API as a `ControlService`. ``transport`` and ``sleep`` are for tests."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        retries: int = 5,
        timeout_s: float = 600.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from importlib.metadata import version

        self.url = url.rstrip("/")
        self.retries = retries
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": f"mlcp/{version('mlcp')}"},
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteService:
        return cls(
            settings.api_url,
            settings.token.get_secret_value(),
            retries=settings.api_retries,
            timeout_s=settings.api_timeout_s,
        )

    def close(self) -> None:
        self._http.close()

    # -- models --------------------------------------------------------------------------------
    def versions(self, name: str | None = None) -> list[Json]:
        path = "/v1/models" if name is None else f"/v1/models/{_seg(name)}/versions"
        return self._get(path)

    def version(self, ref: str) -> Json:
        return self._get(_version_path(ref))

    def register(self, request: RegisterFiles, progress: Progress = silent) -> Json:
        from registry.errors import InvalidRegistration

        if request.model_format != "pt2":
            raise InvalidRegistration(
                "--format",
                f"{request.model_format} needs local mode: the control API takes torch.export "
                "programs only (it never unpickles what a client sends); register pt2",
            )
        archive = _exported(
            request.model, request.input_example, progress, request.unsafe_allow_pickle
        )
        model = self._upload(archive, f"{Path(request.model).stem}.pt2", progress)
        example = self._upload(request.input_example, upload_name(request.input_example), progress)
        data = None
        if request.training_data is not None:
            data = self._upload(request.training_data, upload_name(request.training_data), progress)
        # A key makes the registration safe to retry: the server returns the version a lost
        # answer had created instead of registering it twice.
        key = request.idempotency_key or f"mlcp-cli-{uuid.uuid4().hex}"
        progress(f"registering {request.name} on {self.url}")
        body = {
            "name": request.name,
            "model": model,
            "input_example": example,
            "training_data": data,
            "label": request.label,
            "feature_service": request.feature_service,
            "input_names": list(request.input_names),
            "params": dict(request.params),
            "metrics": dict(request.metrics),
            "code_version": request.code_version,
            "idempotency_key": key,
            "description": request.description,
        }
        return self._call(
            "POST", "/v1/registrations", json=body, repeatable=True,
            retry_kinds=("RegistrationInProgress",),
        )  # fmt: skip

    def lineage(self, ref: str) -> Json:
        return self._get(f"{_version_path(ref)}/lineage")

    # -- evaluation and promotion -------------------------------------------------------------
    def evaluate(self, request: EvaluateFiles, progress: Progress = silent) -> Json:
        data = self._upload(request.data, upload_name(request.data), progress)
        progress(f"evaluating {request.ref} on {self.url}")
        body = {
            "ref": request.ref,
            "data": data,
            "label": request.label,
            "task": request.task,
            "features": request.features,
            "feature_service": request.feature_service,
        }
        return self._call("POST", "/v1/evaluations", json=body)

    def promote(self, ref: str, canary_percent: int | None = None, *, canary: bool = False) -> Json:
        body = {"canary_percent": canary_percent, "canary": canary}
        # A refusal (422) or a lost race (409) is a result with its gate report, not an error.
        return self._call("POST", f"{_version_path(ref)}/promote", json=body, results=(409, 422))

    def approve(self, ref: str, reason: str | None = None) -> Json:
        return self._call("POST", f"{_version_path(ref)}/approve", json={"reason": reason})

    def reject(self, ref: str, reason: str) -> Json:
        return self._call("POST", f"{_version_path(ref)}/reject", json={"reason": reason})

    def gate_runs(self, ref: str) -> list[Json]:
        return self._get(f"{_version_path(ref)}/gates")

    def shadow(self, ref: str, reason: str | None = None) -> Json:
        name, version = self._numbered(ref)
        body = {"version": version, "reason": reason}
        return self._call("POST", f"/v1/models/{_seg(name)}/shadow", json=body)

    def unshadow(self, name: str, reason: str | None = None) -> Json:
        body = {"version": None, "reason": reason}
        return self._call("POST", f"/v1/models/{_seg(name)}/shadow", json=body)

    def windows(self, ref: str, limit: int = 20) -> list[Json]:
        name, version = (ref, None) if "@" not in ref else self._numbered(ref)
        params: dict[str, Any] = {"limit": limit}
        if version is not None:
            params["version"] = version
        return self._get(f"/v1/models/{_seg(name)}/windows", params=params)

    def drift(self, ref: str, windows: int = 20) -> Json:
        name, version = self._numbered(ref)
        return self._get(
            f"/v1/models/{_seg(name)}/versions/{version}/drift", params={"windows": windows}
        )

    def report(self, name: str, since: datetime | None = None) -> str:
        params = {"since": since.isoformat()} if since is not None else None
        return self._call(
            "GET", f"/v1/models/{_seg(name)}/report", params=params, repeatable=True, text=True
        )

    # -- deployments and rollouts --------------------------------------------------------------
    def deployments(self, name: str | None = None) -> list[Json]:
        if name is None:
            return self._get("/v1/deployments")
        try:
            return [self._get(f"/v1/deployments/{_seg(name)}")]
        except ApiError as exc:
            if exc.status == 404 and exc.kind != "ModelNotFound":
                return []  # registered, never deployed (as locally)
            raise

    def rollback(self, name: str, reason: str, to: int | None = None) -> Json:
        body = {"reason": reason, "to": to}
        return self._call("POST", f"/v1/models/{_seg(name)}/rollback", json=body)

    def canary(self, name: str, action: str, reason: str | None = None) -> Json:
        if action not in CANARY_ACTIONS:
            raise ValueError(f"canary action {action!r}: use one of {', '.join(CANARY_ACTIONS)}")
        path = f"/v1/models/{_seg(name)}/canary/{action}"
        return self._call("POST", path, json={"reason": reason})

    # -- policies -----------------------------------------------------------------------------
    def set_policy(self, name: str, policy: Policy) -> Json:
        # Validated here already (same messages as locally), and again by the server.
        return self._call("PUT", f"/v1/models/{_seg(name)}/policy", json=policy.body())

    def policy(self, name: str) -> Json:
        return self._get(f"/v1/models/{_seg(name)}/policy")

    # -- audit --------------------------------------------------------------------------------
    def audit(
        self, subject: str | None = None, action: str | None = None, limit: int = 50
    ) -> list[Json]:
        params = {k: v for k, v in (("subject", subject), ("action", action)) if v is not None}
        return self._get("/v1/audit", params={**params, "limit": limit})

    def verify_audit(self) -> Json:
        return self._get("/v1/audit/verify")

    # -- features (reads) ---------------------------------------------------------------------
    def features(self) -> Json:
        return self._get("/v1/features")

    def feature(self, ref: str) -> Json:
        return self._get(f"/v1/features/{_seg(ref)}")

    # -- tokens -------------------------------------------------------------------------------
    def create_token(self, name: str, role: str) -> Json:
        return self._call("POST", "/v1/tokens", json={"name": name, "role": role})

    def revoke_token(self, token_id: int) -> Json:
        return self._call("DELETE", f"/v1/tokens/{token_id}")

    def tokens(self, include_revoked: bool = False) -> list[Json]:
        params = {"include_revoked": "true"} if include_revoked else None
        return list(self._get("/v1/tokens", params))

    # -- transport ----------------------------------------------------------------------------
    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._call("GET", path, params=params, repeatable=True)

    def _numbered(self, ref: str) -> tuple[str, int]:
        """NAME@VERSION as (name, number), resolving an alias (churn@champion) first."""
        from registry.refs import ModelRef

        parsed = ModelRef.parse(ref)
        if parsed.version is not None:
            return parsed.name, parsed.version
        return parsed.name, int(self.version(ref)["version"])

    def _upload(self, body: Body, name: str, progress: Progress) -> str:
        """Upload a file (or bytes) unless the server has it; returns its upload id."""
        sha = hashlib.sha256(body).hexdigest() if isinstance(body, bytes) else file_sha256(body)
        path = f"/v1/uploads/{sha}/{_seg(name)}"
        if self._call("HEAD", path, repeatable=True, results=(404,)) is not _MISSING:
            progress(f"{name}: already on the server")
            return f"{sha}/{name}"
        size = len(body) if isinstance(body, bytes) else body.stat().st_size
        progress(f"uploading {name} ({_size(size)})")
        self._call("PUT", path, content=body, repeatable=True)  # content-addressed: idempotent
        return f"{sha}/{name}"

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: Body | None = None,
        repeatable: bool = False,
        retry_kinds: tuple[str, ...] = (),
        results: tuple[int, ...] = (),
        text: bool = False,
    ) -> Any:
        """One API call, retried per `retry_delay`; the JSON answer, or an ApiError.

        ``repeatable``: safe to send twice. A request that never left (connection refused)
        is retried whatever the call. ``results``: statuses whose body is the answer.
        ``text``: the answer is text (the report's HTML), not JSON.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                with _body(content) as data:
                    response = self._http.request(
                        method, path, json=json, params=params, content=data
                    )
            except httpx.TransportError as exc:
                never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self._wait_or_raise(attempt, repeatable or never_sent, None, why, exc)
                continue
            status = response.status_code
            if status in results:
                return _MISSING if method == "HEAD" else _json(response)
            if status < 400:
                if text:
                    return response.text
                return None if method == "HEAD" else _json(response)
            error = _error(response, self.url)
            if status == 503 or error.kind in retry_kinds:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                self._wait_or_raise(attempt, repeatable, retry_after, str(error), None)
                continue
            raise error

    def _wait_or_raise(
        self,
        attempt: int,
        repeatable: bool,
        retry_after: float | None,
        why: str,
        cause: BaseException | None,
    ) -> None:
        delay = retry_delay(attempt, self.retries, repeatable, retry_after, random.random())
        if delay is None:
            raise ApiUnavailable(self.url, why, attempt) from cause
        self._sleep(delay)


_MISSING = object()  # a HEAD answered 404


@contextlib.contextmanager
def _body(content: Body | None) -> Iterator[Any]:
    """A request body: bytes as they are, a file opened afresh for each try."""
    if not isinstance(content, Path):
        yield content
        return
    with content.open("rb") as fh:
        yield fh


def _exported(model: Path, example: Path, progress: Progress, unsafe_allow_pickle: bool) -> bytes:
    """The model as torch.export archive bytes: the file itself if it is one (the server
    checks it), else a torch.save'd module unpickled here (only with the opt-in) and
    exported."""
    from registry.archive import export_archive, is_exported_archive

    if is_exported_archive(model):
        return model.read_bytes()  # the cheap path: no torch here at all
    from registry.model_files import load_input_example, load_model_file

    loaded = load_model_file(model, unsafe_allow_pickle=unsafe_allow_pickle)
    progress(f"exporting {model} with torch.export (save it with torch.export.save to skip this)")
    return export_archive(loaded, load_input_example(example))


def _version_path(ref: str) -> str:
    from registry.refs import ModelRef

    parsed = ModelRef.parse(ref)  # a bad ref fails here, with the local message
    which = parsed.alias if parsed.version is None else str(parsed.version)
    return f"/v1/models/{_seg(parsed.name)}/versions/{_seg(str(which))}"


def _seg(part: str) -> str:
    return quote(part, safe="@")


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ApiFailed(
            response.status_code, "NotJson", f"the control API answered {response.status_code} "
            f"with something other than JSON: {response.text[:200]!r}",
        ) from None  # fmt: skip


def _error(response: httpx.Response, url: str) -> ApiError:
    """The API's error body as the exception the CLI maps to an exit code."""
    status = response.status_code
    kind, message = "HTTPError", response.text[:300] or response.reason_phrase
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error", body.get("detail"))
        if isinstance(error, dict):
            kind = str(error.get("type", kind))
            message = str(error.get("message", message))
        elif error is not None:
            message = str(error)
    if status in (401, 403):
        return ApiDenied(status, kind, f"{message} (the token in MLCP_TOKEN, at {url})")
    if kind == "ConcurrentChange":
        return ApiRefused(status, kind, message)
    if status >= 500:
        return ApiFailed(status, kind, f"the control API failed ({status}): {message}")
    return ApiError(status, kind, message)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
