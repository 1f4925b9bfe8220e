"""The serving REST app: Open Inference Protocol v2, the entity endpoint, health and metrics.

    app = create_app(manager)          # manager: a started or not-yet-started ModelManager
    uvicorn.run(app, host="127.0.0.1", port=8080)

Endpoints (KServe v2 / Triton clients work unchanged):
- ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2``
- ``GET /v2/models/{name}[/versions/{v}]``, ``GET .../ready``
- ``POST /v2/models/{name}[/versions/{v}]/infer``
- ``POST /v1/models/{name}/predict`` with ``{"entities": [{"customer_id": 7}, ...]}``
- ``GET /v1/serving/state`` (what this replica serves), ``GET /metrics`` (Prometheus)

Every error is JSON ``{"error": "..."}`` with a 4xx/5xx status from `serving.errors`; a full
queue answers 503 with ``Retry-After``, a missed deadline 504. ``X-Request-Timeout-Ms``
sets a request's deadline; ``X-Request-ID`` is echoed (or made) and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import Route

from serving.cached import (
    CACHE_HEADER,
    EntityShare,
    ask_shared,
    cache_state,
    cached_output,
    keep_output,
    shared_output,
)
from serving.config import BATCH, CRITICAL, PRIORITIES, ServingPolicy
from serving.door import Door
from serving.errors import (
    DeadlineExceeded,
    InvalidInput,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    ServingError,
    Shed,
)
from serving.limits import PRIORITY_HEADER, ClientLimits, client_of
from serving.logs import REQUEST_ID, request_id
from serving.manager import ModelManager
from serving.metrics import OTHER
from serving.openapi import install_error_handlers, serving_openapi
from serving.protocol import (
    InferenceRequest,
    PredictRequest,
    encode_infer_response,
    input_tensor,
    model_metadata,
    parse_body,
    parse_infer,
)
from serving.routing import entity_routing_key, random_key, routing_key
from serving.served import Payload, ServedVersion, TensorRows
from serving.spec import ModelSpec
from serving.windows import outcome_of

log = logging.getLogger("serving.access")
SERVER_NAME = "mlcp"
# Open Inference Protocol extensions this server speaks (Triton's names).
EXTENSIONS = ["binary_tensor_data"]
# On an entity answer computed from features served past their freshness (the online store
# was down): the oldest such row's age in seconds. The body says which rows
# (``stale_features``).
STALE_HEADER = "X-Features-Stale-Age-S"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def error_response(exc: ServingError) -> Response:
    """The one place serving errors become HTTP."""
    headers = {}
    if isinstance(exc, Overloaded | RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    return _json({"error": exc.message}, exc.status, headers)


class RequestContext:
    """The ASGI middleware: request id in and out, body-size limit by Content-Length."""

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app, self.max_body_bytes = app, max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        length = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                given = value.decode("latin-1")
            elif key == b"content-length":
                length = value
        rid = request_id(given)
        token = REQUEST_ID.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        header = (b"x-request-id", rid.encode())

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                response = error_response(PayloadTooLarge(self.max_body_bytes))
                await response(scope, receive, send_with_id)
                return
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


def create_app(manager: ModelManager) -> FastAPI:
    """The FastAPI app over a `ModelManager`; starts and stops it with the server."""
    config = manager.config
    limits = ClientLimits(config.clients)
    door = Door(config.max_batch_inflight, config.shed_batch_at_lag_ms / 1000)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await manager.start()
        try:
            yield
        finally:
            await manager.stop()

    app = FastAPI(title="mlcp serving", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    install_error_handlers(app)
    app.openapi = lambda: serving_openapi(app)  # type: ignore[method-assign]

    async def body_of(request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > config.max_body_bytes:
                raise PayloadTooLarge(config.max_body_bytes)
            chunks.append(chunk)
        return b"".join(chunks)

    def budget(request: Request) -> float:
        raw = request.headers.get("x-request-timeout-ms")
        if raw is None:
            return config.default_timeout_ms
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not 0 < value <= 3_600_000:
            raise InvalidInput(
                f"X-Request-Timeout-Ms is {raw!r}; give milliseconds between 1 and 3600000"
            )
        return value

    def admit_client(request: Request, name: str) -> int:
        """The request's priority class, once its client's token bucket lets it through
        (raises `RateLimited`: 429 with Retry-After)."""
        policy = _model_policy(manager, name)
        client = client_of(request.headers, request.client.host if request.client else None)
        try:
            priority = limits.priority(
                client, request.headers.get(PRIORITY_HEADER), policy.priority
            )
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        wait_s = limits.take(client, name if name in manager.deployments else OTHER, policy.rate)
        if wait_s > 0:
            limit = limits.limit_of(client, policy.rate)
            raise RateLimited(client, limit.rate_per_s if limit else 0.0, wait_s)
        now = time.monotonic()
        if priority == CRITICAL:
            door.critical(now)
        elif door.refuse_batch(now, manager.metrics.busy_meter.loop_lag_s):
            raise Shed(name, 0, config.batching.retry_after_s, PRIORITIES[BATCH])
        return priority

    async def answer(
        endpoint: str,
        name: str,
        handler: Callable[[float, float, Tally, int], Awaitable[Response]],
        request: Request,
    ) -> Response:
        """Run a model endpoint: deadline, errors to JSON, windows, metrics, the access log.

        The handler charges each version it routes to on ``tally`` before anything can fail,
        so every request counts in the window of the version(s) that took it, whatever the
        outcome; one that failed before routing counts against the model's primary version.
        """
        start = time.monotonic()
        tally = Tally()
        try:
            priority = admit_client(request, name)
            with door.admitted(priority):
                response = await handler(start, budget(request), tally, priority)
        except ServingError as exc:
            response = error_response(exc)
        except Exception:
            log.exception("unhandled error on %s", request.url.path)
            response = _json({"error": "internal error; see the server log"}, 500)
        elapsed = time.monotonic() - start
        status = response.status_code
        charges = tally.charges or _fallback_charge(manager, name)
        for served, own, own_s in charges:
            code = status if own is None else own
            took = elapsed if own_s is None else own_s
            served.recorder.record(outcome_of(code), took)
            manager.metrics.request(name, str(served.spec.version), endpoint, code, took)
        if not charges:  # not served here: one fixed label, whatever the URL said
            label = name if name in manager.deployments else OTHER
            manager.metrics.request(label, OTHER, endpoint, status, elapsed)
        if not config.access_log and status < 500:
            return response
        log.log(
            logging.INFO if status < 500 else logging.WARNING,
            "%s %s %d",
            request.method,
            request.url.path,
            status,
            extra={
                "model": name,
                "version": ",".join(str(s.spec.version) for s, _, _ in charges),
                "endpoint": endpoint,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
            },
        )
        return response

    async def wait(
        future: asyncio.Future[Any], served: ServedVersion, deadline: float, budget_ms: float
    ) -> Any:
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                return await future
        except TimeoutError:
            raise DeadlineExceeded(served.ref, budget_ms) from None

    def submit_share(
        share: EntityShare, deadline: float, budget_ms: float, priority: int
    ) -> Awaitable[Any]:
        """Submit the rows the cache did not answer (now: no await before the submit)."""
        if share.payload is None:
            return _nothing()
        served, rows = share.served, len(share.missing)
        future = served.submit(share.payload, rows, deadline, budget_ms, priority)
        return wait(future, served, deadline, budget_ms)

    def mirror(
        shadow: ServedVersion | None,
        payload: Payload | None,
        rows: int,
        deadline: float,
        budget_ms: float,
        keep: Callable[[Any], object] | None = None,
    ) -> None:
        """Give the shadow a copy; its answer is recorded in its window (and ``keep`` it in
        the shadow's own cache), never returned. None: its cache had every answer."""
        if shadow is None:
            return
        if payload is None:
            manager.metrics.shadow.labels(shadow.ref, "cached").inc()
            shadow.recorder.record(outcome_of(200), 0.0)
            return
        start = time.monotonic()
        try:  # a copy nobody waits for: the first to go under load
            future = shadow.submit(payload, rows, deadline, budget_ms, BATCH)
        except ServingError as exc:
            manager.metrics.shadow.labels(shadow.ref, "dropped").inc()
            shadow.recorder.record(outcome_of(exc.status), 0.0)
            return

        def done(f: asyncio.Future[Any]) -> None:
            error = f.exception() if not f.cancelled() else DeadlineExceeded(shadow.ref, budget_ms)
            manager.metrics.shadow.labels(shadow.ref, "failed" if error else "answered").inc()
            shadow.recorder.record(outcome_of(status_of(error)), time.monotonic() - start)
            if error is None and keep is not None:
                keep(f.result())

        future.add_done_callback(done)

    async def infer(request: Request, name: str, version: int | None) -> Response:
        async def handle(start: float, budget_ms: float, tally: Tally, priority: int) -> Response:
            body = parse_infer(
                await body_of(request), request.headers.get("inference-header-content-length")
            )
            entity = (body.parameters or {}).get("entity_key")
            bucket = routing_key(str(entity)) if entity is not None else random_key()

            def route() -> tuple[ServedVersion, ServedVersion | None]:
                if version is not None:
                    return manager.version(name, version), None
                return manager.route(name, bucket)

            served, shadow = route()
            tally.route(served)
            tensor = input_tensor(body, served.spec)
            deadline = start + budget_ms / 1000
            rows = tensor.shape[0]
            key, hit = cached_output(served, tensor)
            if hit is None and served.shared is not None:
                hit = await shared_output(served, key, rows)
                if route() != (served, shadow):
                    # Swapped while Redis answered: route afresh, local tier only (no await
                    # from here to the submit).
                    served, shadow = route()
                    tally.rerouted(served)
                    tensor = input_tensor(body, served.spec)
                    key, hit = cached_output(served, tensor)
            future = (
                None
                if hit is not None
                else served.submit(TensorRows(tensor), rows, deadline, budget_ms, priority)
            )
            if shadow is not None and _fits(tensor, shadow):
                shadow_key, shadow_hit = cached_output(shadow, tensor)
                mirror(
                    shadow,
                    None if shadow_hit is not None else TensorRows(tensor),
                    rows,
                    deadline,
                    budget_ms,
                    functools.partial(keep_output, shadow, shadow_key),
                )
            if future is None:
                return _infer_answer(served.spec, hit, body, cache="hit")
            outputs = await wait(future, served, deadline, budget_ms)
            keep_output(served, key, outputs)
            return _infer_answer(
                served.spec, outputs, body, cache="miss" if key is not None else None
            )

        return await answer("infer", name, handle, request)

    @app.get("/v2")
    async def server_metadata() -> Response:
        return _json({"name": SERVER_NAME, "version": _version(), "extensions": EXTENSIONS})

    @app.get("/v2/health/live")
    async def live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        if manager.ready:
            return _json({"ready": True})
        waiting = sorted(set(manager.desired) - set(manager.deployments))
        return _json({"ready": False, "waiting_for": waiting}, 503)

    @app.get("/v2/models/{name}")
    async def model(name: str) -> Response:
        try:
            served = manager.primary(name)
        except ServingError as exc:
            return error_response(exc)
        body = model_metadata(served.spec)
        body["versions"] = [str(v) for (n, v) in sorted(manager.live) if n == name]
        return _json(body)

    @app.get("/v2/models/{name}/versions/{version}")
    async def model_version(name: str, version: int) -> Response:
        try:
            return _json(model_metadata(manager.version(name, version).spec))
        except ServingError as exc:
            return error_response(exc)

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> Response:
        try:
            manager.primary(name)
        except ServingError as exc:
            return _json({"name": name, "ready": False, "error": exc.message}, exc.status)
        return _json({"name": name, "ready": True})

    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_version_ready(name: str, version: int) -> Response:
        try:
            manager.version(name, version)
        except ServingError as exc:
            return _json({"name": name, "ready": False, "error": exc.message}, exc.status)
        return _json({"name": name, "version": str(version), "ready": True})

    # The three model endpoints are plain Starlette routes: they read their own bodies (to
    # bound the size and answer with OIP's error shape), so FastAPI's parameter machinery
    # would only add cost (about a third of the event loop's time per request, profiled).
    async def infer_model(request: Request) -> Response:
        return await infer(request, request.path_params["name"], None)

    async def infer_version(request: Request) -> Response:
        params = request.path_params
        return await infer(request, params["name"], params["version"])

    async def predict(request: Request) -> Response:
        name: str = request.path_params["name"]

        async def handle(start: float, budget_ms: float, tally: Tally, priority: int) -> Response:
            body = parse_body(PredictRequest, await body_of(request))
            deadline = start + budget_ms / 1000
            groups = route_entities(manager, name, body.entities)
            pairs = entity_shares(body.entities, groups)  # their caches answer what they can
            if any(share.shared_keys for share in _flat(pairs)):
                await ask_shared(_flat(pairs))  # the local tiers' misses, in one round trip
                again = route_entities(manager, name, body.entities)
                if _routes(again) != _routes(groups):
                    # Swapped while Redis answered: route afresh, local tier only (no await
                    # from here to the submits).
                    groups, pairs = again, entity_shares(body.entities, again)
            waits, shares = [], []
            for (served, shadow, _), (share, mirrored) in zip(groups.values(), pairs, strict=True):
                tally.route(served)
                shares.append(share)
                waits.append(submit_share(share, deadline, budget_ms, priority))
                if shadow is not None and mirrored is not None:
                    rows = len(mirrored.missing)
                    mirror(shadow, mirrored.payload, rows, deadline, budget_ms, mirrored.values)
            answered = await asyncio.gather(*(_clocked(w) for w in waits))
            results = [result for result, _ in answered]
            # A request split between champion and challenger counts once per version, each
            # with its own outcome and latency (until its own rows were answered): a slow or
            # failing challenger is not the champion's fault.
            split = len(groups) > 1
            for (served, _, _), (result, at) in zip(groups.values(), answered, strict=True):
                tally.settle(
                    served,
                    status_of(result if isinstance(result, BaseException) else None),
                    at - start if split else None,
                )
            failed = next((r for r in results if isinstance(r, BaseException)), None)
            if failed is not None:
                raise failed
            predictions: list[Any] = [None] * len(body.entities)
            versions: list[int] = [0] * len(body.entities)
            cached: list[int] = []
            for (served, _, indexes), share, outputs in zip(
                groups.values(), shares, results, strict=True
            ):
                assert outputs is None or isinstance(outputs, torch.Tensor)
                for index, value in zip(indexes, share.values(outputs), strict=True):
                    predictions[index], versions[index] = value, served.spec.version
                cached += [indexes[j] for j in share.cached]
            first = next(iter(groups.values()))[0]
            out: dict[str, Any] = {
                "model_name": name,
                "model_version": str(first.spec.version) if len(groups) == 1 else None,
                "predictions": predictions,
                "versions": versions,
                "feature_service": first.spec.feature_service,
            }
            if body.id is not None:
                out["id"] = body.id
            headers = {}
            if any(share.keys is not None for share in shares):
                out["cached_rows"] = sorted(cached)
                headers[CACHE_HEADER] = cache_state(len(cached), len(body.entities))
            stale = _stale_rows(list(groups.values()), shares)
            if not stale:
                return _json(out, headers=headers)
            age_s = max(stale.values())
            out["stale_features"] = {"rows": sorted(stale), "age_s": round(age_s, 3)}
            for served, _, _ in groups.values():
                manager.metrics.stale_answer(served.ref)
            headers[STALE_HEADER] = f"{age_s:.3f}"
            return _json(out, headers=headers)

        return await answer("predict", name, handle, request)

    # First in the route table: the router tries routes in order, and these take the traffic.
    app.router.routes[:0] = [
        Route("/v2/models/{name}/infer", infer_model, methods=["POST"], include_in_schema=False),
        Route(
            "/v2/models/{name}/versions/{version:int}/infer",
            infer_version,
            methods=["POST"],
            include_in_schema=False,
        ),
        Route("/v1/models/{name}/predict", predict, methods=["POST"], include_in_schema=False),
    ]

    @app.get("/v1/serving/state")
    async def state() -> Response:
        return _json(
            {
                "replica": manager.replica,
                "ready": manager.ready,
                "busy": round(manager.metrics.busy_now(), 4),
                "loop_lag_ms": round(manager.metrics.busy_meter.loop_lag_s * 1000, 3),
                "refused_at_door": door.refused,
                "deployments": {
                    name: {
                        "champion": d.champion,
                        "challenger": d.challenger,
                        "canary_percent": d.canary_percent,
                        "shadow": d.shadow,
                        "revision": d.revision,
                    }
                    for name, d in manager.deployments.items()
                },
                "versions": {
                    s.ref: {
                        "role": s.role,
                        "device": str(s.runtime.device),
                        "queued": s.batcher.waiting,
                        "batches": s.batcher.stats.batches,
                        "rows": s.batcher.stats.rows,
                        "expired": s.batcher.stats.expired,
                        "rejected": s.batcher.stats.rejected,
                        "shed": s.batcher.stats.shed,
                        "cached": len(s.cache) if s.cache is not None else None,
                    }
                    for s in manager.live.values()
                },
                "standby": sorted(s.served.ref for s in manager.standby.values()),
                "failures": {f.ref: f.why for f in manager.failures.values()},
                "pending_windows": manager.pending_windows,
            }
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(manager.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(RequestContext, max_body_bytes=config.max_body_bytes)
    return app


Charge = tuple[ServedVersion, int | None, float | None]


class Tally:
    """The versions one request was routed to, each with its own status and latency where
    they differ from the response's (a split entity request): what windows and metrics count."""

    __slots__ = ("charges",)

    def __init__(self) -> None:
        self.charges: list[Charge] = []

    def route(self, served: ServedVersion) -> None:
        """Charge ``served`` with this request (its outcome: the response's status)."""
        self.charges.append((served, None, None))

    def rerouted(self, served: ServedVersion) -> None:
        """The request was routed again (a swap while it waited on the shared cache): charge
        ``served`` instead."""
        self.charges = [(served, None, None)]

    def settle(self, served: ServedVersion, status: int, seconds: float | None = None) -> None:
        """Give ``served``'s share of the request its own status (and latency, if its own)."""
        self.charges = [
            (s, status, seconds) if s is served else (s, own, own_s)
            for s, own, own_s in self.charges
        ]


Groups = dict[str, tuple[ServedVersion, ServedVersion | None, list[int]]]


def route_entities(manager: ModelManager, name: str, entities: list[dict[str, Any]]) -> Groups:
    """The entities' indexes by the version each routes to (with that route's shadow). Each
    entity is routed by its own key, so one entity always meets one version."""
    groups: Groups = {}
    for index, entity in enumerate(entities):
        served, shadow = manager.route(name, entity_routing_key(entity))
        groups.setdefault(served.ref, (served, shadow, []))[2].append(index)
    return groups


def entity_shares(
    entities: list[dict[str, Any]], groups: Groups
) -> list[tuple[EntityShare, EntityShare | None]]:
    """Each group's share of the request (and its shadow's copy), looked up in local caches."""
    out: list[tuple[EntityShare, EntityShare | None]] = []
    for served, shadow, indexes in groups.values():
        mine = [entities[i] for i in indexes]
        out.append((EntityShare(served, mine), EntityShare(shadow, mine) if shadow else None))
    return out


def _flat(pairs: list[tuple[EntityShare, EntityShare | None]]) -> list[EntityShare]:
    return [share for pair in pairs for share in pair if share is not None]


def _routes(groups: Groups) -> list[tuple[ServedVersion, ServedVersion | None]]:
    return [(served, shadow) for served, shadow, _ in groups.values()]


async def _clocked(awaitable: Awaitable[Any]) -> tuple[Any, float]:
    """What ``awaitable`` gave (or the exception it raised) and the moment it did."""
    try:
        result: Any = await awaitable
    except Exception as exc:
        result = exc
    return result, time.monotonic()


def status_of(error: BaseException | None) -> int:
    """The HTTP status a request's failure (None: success) answers with."""
    if error is None:
        return 200
    return error.status if isinstance(error, ServingError) else 500


def _model_policy(manager: ModelManager, name: str) -> ServingPolicy:
    """What the policy of the model a request names says about serving it (defaults when
    it is not served here)."""
    if name not in manager.deployments:
        return ServingPolicy()
    try:
        return manager.primary(name).spec.serving
    except (ServingError, KeyError):
        return ServingPolicy()


def _fallback_charge(manager: ModelManager, name: str) -> list[Charge]:
    """A request that failed before it was routed (a bad body) counts against the model's
    primary version, so client errors show in the windows too; nothing when not served."""
    try:
        return [(manager.primary(name), None, None)]
    except ServingError:
        return []


def _infer_answer(
    spec: ModelSpec, outputs: torch.Tensor, request: InferenceRequest, cache: str | None = None
) -> Response:
    body, header_length = encode_infer_response(spec, outputs, request)
    headers = {CACHE_HEADER: cache} if cache is not None else {}
    if header_length is None:
        return Response(body, media_type="application/json", headers=headers)
    headers["Inference-Header-Content-Length"] = str(header_length)
    return Response(body, media_type="application/octet-stream", headers=headers)


def _stale_rows(
    groups: list[tuple[ServedVersion, ServedVersion | None, list[int]]],
    shares: list[EntityShare],
) -> dict[int, float]:
    """Request row index -> age of its stale features, for the rows answered from stale ones."""
    stale: dict[int, float] = {}
    for (served, _, indexes), share in zip(groups, shares, strict=True):
        if share.payload is None:
            continue
        for local, age_s in share.payload.stale.get(served.ref, {}).items():
            stale[indexes[share.missing[local]]] = age_s
    return stale


async def _nothing() -> None:
    return None


def _fits(tensor: torch.Tensor, shadow: ServedVersion) -> bool:
    width = shadow.runtime.width
    return tensor.ndim == 2 and (width is None or tensor.shape[1] == width)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlcp")
    except PackageNotFoundError:
        return "0"
