"""``mlcp serve``: the serving tier (Open Inference Protocol v2 + entity endpoint) on uvicorn,
following the desired state in the control-plane database."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

import click

from controlplane.cli import Env, local_only
from controlplane.cli.output import progress

if TYPE_CHECKING:
    from serving.config import ClientPolicy, SharedCacheConfig
    from serving.spec import FeatureLookup, LookupRow


class LazyLookup:
    """Builds the feature lookup (Feast: seconds of imports) only when a served version pins a
    feature service: the manager warms it while loading that version, before it is ready."""

    def __init__(self, build: Callable[[], FeatureLookup]) -> None:
        self._build = build
        self._lookup: FeatureLookup | None = None
        self._lock = threading.Lock()

    def _get(self) -> FeatureLookup:
        from serving.errors import FeaturesUnavailable

        with self._lock:
            if self._lookup is None:
                try:
                    self._lookup = self._build()
                except Exception as exc:
                    raise FeaturesUnavailable(
                        f"the feature store could not be opened ({exc}); check the MLCP_FEAST_* "
                        "settings and `mlcp features list`"
                    ) from exc
            return self._lookup

    def warm(self, service: str) -> None:
        self._get().warm(service)

    def lookup(self, service: str, entities: list[dict[str, Any]]) -> list[LookupRow]:
        return self._get().lookup(service, entities)

    def generation(self, service: str) -> Hashable | None:
        lookup = self._lookup  # never builds it: a request must not wait for Feast's import
        return lookup.generation(service) if lookup is not None else None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--model", "models", multiple=True, help="serve only this model (repeatable)")
@click.option("--max-batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--max-delay-ms", type=click.FloatRange(0), default=2.0, show_default=True)
@click.option("--max-queue", type=click.IntRange(1), default=1024, show_default=True)
@click.option(
    "--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda:N"
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float16", "bfloat16"]),
    default="float32",
    show_default=True,
)
@click.option(
    "--timeout-ms",
    type=click.FloatRange(1),
    default=10_000.0,
    show_default=True,
    help="deadline of a request without X-Request-Timeout-Ms",
)
@click.option("--max-body-mb", type=click.FloatRange(0.001), default=8.0, show_default=True)
@click.option("--poll-s", type=click.FloatRange(0.01), default=1.0, show_default=True)
@click.option("--window-s", type=click.FloatRange(0.1), default=60.0, show_default=True)
@click.option("--replica", default="", help="name in window reports (default host:pid)")
@click.option(
    "--keep-warm-s",
    type=click.FloatRange(0),
    default=600.0,
    show_default=True,
    help="keep a replaced champion loaded this long, so a rollback to it is a route flip",
)
@click.option(
    "--heartbeat-s",
    type=click.FloatRange(0.05),
    default=5.0,
    show_default=True,
    help="how often to tell the control plane what this replica serves",
)
@click.option(
    "--client-rate",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="requests/s each client may send per model (0: no limit; a model's policy may set "
    "its own); over it a client gets 429 with Retry-After",
)
@click.option(
    "--client-burst",
    type=click.FloatRange(0),
    default=0.0,
    help="requests a client may send at once (default: one second's worth)",
)
@click.option(
    "--client-limit",
    "client_limits",
    multiple=True,
    metavar="CLIENT=RATE[/BURST]",
    help="a client's own limit (repeatable); CLIENT is its X-Client-ID, token:<sha256 "
    "prefix> or ip:<address>",
)
@click.option(
    "--client-class",
    "client_classes",
    multiple=True,
    metavar="CLIENT=CLASS",
    help="a client's priority class, critical, normal or batch (repeatable): its default, "
    "and the most urgent its X-Priority may ask for",
)
@click.option(
    "--batch-share",
    type=click.FloatRange(0.01, 1.0),
    default=0.5,
    show_default=True,
    help="the share of --max-queue batch-class requests may fill before they are shed (503)",
)
@click.option(
    "--device-hour-price",
    type=click.FloatRange(0),
    default=None,
    help="what an hour of this replica's device costs: /metrics then shows the cost of "
    "1,000 predictions per version (default: MLCP_DEVICE_HOUR_PRICE)",
)
@click.option(
    "--queue-budget-ms",
    type=click.FloatRange(0.1),
    default=50.0,
    show_default=True,
    help="the queue wait that counts as fully busy in mlcp_serving_busy (with device "
    "utilisation: the gauge to autoscale on, target 0.7)",
)
@click.option(
    "--max-batch-inflight",
    type=click.IntRange(0),
    default=2,
    show_default=True,
    help="while critical requests are coming, refuse batch-class requests (503) "
    "at the door past this many in flight (0: no cap)",
)
@click.option(
    "--shed-batch-at-lag-ms",
    type=click.FloatRange(0),
    default=10.0,
    show_default=True,
    help="refuse batch-class requests (503) at the door while the event loop runs this late "
    "and critical requests are coming (0: never)",
)
@click.option(
    "--cache-redis-url",
    default=None,
    metavar="URL",
    help="the Redis where replicas share prediction caches, for models whose policy says "
    "cache: {shared: true} (default: MLCP_CACHE_REDIS_URL; unset: caches stay local)",
)
@click.option(
    "--cache-redis-timeout-ms",
    type=click.FloatRange(1, 10_000),
    default=50.0,
    show_default=True,
    help="a shared-cache call slower than this counts as failed; Redis is then skipped for "
    "5 s (requests go to the local cache and the model)",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning"]), default="info")
@click.option("--access-log", is_flag=True, help="log every request (default: only failures)")
@click.option(
    "--db-timeout-s",
    type=click.FloatRange(0.1, 600),
    default=5.0,
    show_default=True,
    help="statement timeout of this replica's control-plane database accesses "
    "(MLCP_DB_STATEMENT_TIMEOUT_S wins when set)",
)
@local_only
def serve(
    env: Env,
    host: str,
    port: int,
    models: tuple[str, ...],
    max_batch_size: int,
    max_delay_ms: float,
    max_queue: int,
    device: str,
    dtype: str,
    timeout_ms: float,
    max_body_mb: float,
    poll_s: float,
    window_s: float,
    replica: str,
    keep_warm_s: float,
    heartbeat_s: float,
    log_level: str,
    access_log: bool,
    db_timeout_s: float,
    client_rate: float,
    client_burst: float,
    client_limits: tuple[str, ...],
    client_classes: tuple[str, ...],
    batch_share: float,
    device_hour_price: float | None,
    queue_budget_ms: float,
    max_batch_inflight: int,
    shed_batch_at_lag_ms: float,
    cache_redis_url: str | None,
    cache_redis_timeout_ms: float,
) -> None:
    """Serve the champion (and canary, shadow) of every model, or of each --model.

    Open Inference Protocol v2 at /v2 (Triton's and KServe's clients work), entity keys at
    POST /v1/models/NAME/predict, Prometheus at /metrics. Versions follow `mlcp promote`,
    `mlcp shadow` and rollbacks within --poll-s (at once on PostgreSQL, by NOTIFY).
    """
    import logging

    import uvicorn

    from controlplane.serving import (
        DbDesiredState,
        DbWindowSink,
        RegistryModelLoader,
        feature_lookup,
    )
    from serving.app import create_app
    from serving.config import BatchingConfig, RuntimeConfig, ServerConfig
    from serving.logs import configure_json_logs
    from serving.manager import ModelManager
    from serving.metrics import ServingMetrics

    try:
        clients = client_policy(client_rate, client_burst, client_limits, client_classes)
        shared = shared_cache(cache_redis_url, env.settings.cache_redis_url, cache_redis_timeout_ms)
        config = ServerConfig(
            batching=BatchingConfig(
                max_batch_size, max_delay_ms, max_queue, class_shares=(1.0, 1.0, batch_share)
            ),
            clients=clients,
            queue_budget_ms=queue_budget_ms,
            max_batch_inflight=max_batch_inflight,
            shed_batch_at_lag_ms=shed_batch_at_lag_ms,
            device_hour_price=(
                env.settings.device_hour_price if device_hour_price is None else device_hour_price
            ),
            runtime=RuntimeConfig(device=device, dtype=dtype),
            default_timeout_ms=timeout_ms,
            max_body_bytes=int(max_body_mb * (1 << 20)),
            poll_s=poll_s,
            window_s=window_s,
            replica=replica,
            models=models,
            access_log=access_log,
            keep_warm_s=keep_warm_s,
            heartbeat_s=heartbeat_s,
            shared_cache=shared,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not env.settings.db_statement_timeout_s:
        # Nothing a replica reads from its database may hang a thread for long (it never
        # waits on one while answering: desired state, generations and windows are
        # background work).
        env.settings = env.settings.model_copy(update={"db_statement_timeout_s": db_timeout_s})
    cp = env.cp
    configure_json_logs(getattr(logging, log_level.upper()))
    metrics = ServingMetrics()  # the feature client's series join serving's on /metrics
    manager = ModelManager(
        RegistryModelLoader(cp),
        DbDesiredState(cp.sessions, models, connect_timeout_s=cp.settings.db_connect_timeout_s),
        config,
        lookup=LazyLookup(lambda: feature_lookup(cp, metrics_registry=metrics.registry)),
        sink=DbWindowSink(cp.sessions),
        metrics=metrics,
    )
    progress(f"serving on http://{host}:{port} (OIP v2 at /v2, metrics at /metrics)")
    server = uvicorn.Server(
        uvicorn.Config(create_app(manager), host=host, port=port, log_config=None, access_log=False)
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM (queues drained, last windows reported)
    # and then re-raises the signal; a graceful stop is a success, so it ends in exit 0.
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()


def client_policy(
    rate: float, burst: float, limits: tuple[str, ...], classes: tuple[str, ...]
) -> ClientPolicy:
    """The replica's client settings from `mlcp serve`'s options; ValueError names the bad one."""
    from serving.config import ClientPolicy, RateLimit

    own = {}
    for given in limits:
        client, _, value = given.rpartition("=")
        rate_s, _, burst_s = value.partition("/")
        try:
            own[client] = RateLimit(float(rate_s), float(burst_s or 0))
        except ValueError:
            raise ValueError(
                f"--client-limit {given!r}: give CLIENT=RATE or CLIENT=RATE/BURST, e.g. ci=50/100"
            ) from None
        if not client:
            raise ValueError(f"--client-limit {given!r} names no client")
    named = {}
    for given in classes:
        client, _, name = given.rpartition("=")
        if not client or not name:
            raise ValueError(f"--client-class {given!r}: give CLIENT=CLASS, e.g. ci=batch")
        named[client] = name.lower()
    return ClientPolicy(rate=RateLimit(rate, burst) if rate > 0 else None, rates=own, classes=named)


def shared_cache(option: str | None, setting: str, timeout_ms: float) -> SharedCacheConfig | None:
    """The replica's shared prediction cache: --cache-redis-url, else MLCP_CACHE_REDIS_URL;
    None (caches stay local) when neither names one (``--cache-redis-url ''`` turns it off)."""
    from controlplane.settings import redact_url
    from serving.config import SharedCacheConfig

    url = setting if option is None else option
    if not url:
        return None
    try:
        return SharedCacheConfig(url, timeout_ms)
    except ValueError:
        raise ValueError(
            f"--cache-redis-url {redact_url(url)!r} is not a Redis URL; give "
            "redis://[:password@]host:port[/db]"
        ) from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
