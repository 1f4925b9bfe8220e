"""The serving tier's knobs, as small frozen value objects validated at construction.

BatchingConfig(max_batch_size=32, max_delay_ms=2.0, max_queue=1024)
RuntimeConfig(device="auto", dtype="float32")
ServerConfig(default_timeout_ms=10_000, max_body_bytes=8 << 20)
CachePolicy(ttl_s=60, max_entries=10_000)          # a model's prediction cache (its policy)
SharedCacheConfig(url="redis://cache:6379/0")       # the replica's Redis for shared caches
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DTYPES = ("float32", "float16", "bfloat16")
# Priority classes, most urgent first; a request's class is its index here.
PRIORITIES = ("critical", "normal", "batch")
CRITICAL, NORMAL, BATCH = range(3)


def _positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{owner}.{name} must be > 0, got {value}")


@dataclass(frozen=True)
class BatchingConfig:
    """When a batch closes and how much may wait.

    A batch closes when it holds ``max_batch_size`` rows or ``max_delay_ms`` after its first
    request arrived, whichever comes first; with ``close_when_idle`` it also closes at once
    when the model has nothing to compute (waiting could only add latency then: under load
    the model is busy and batches fill while it computes). Past ``max_queue`` waiting
    requests a version answers 503 with ``Retry-After: retry_after_s``.
    """

    max_batch_size: int = 32
    max_delay_ms: float = 2.0
    max_queue: int = 1024
    retry_after_s: float = 1.0
    close_when_idle: bool = True
    # The share of max_queue each priority class may fill (critical, normal, batch): past
    # its share a class is shed (503) while the classes above it still queue, and a full
    # queue sheds its newest request of a lower class to take a higher one.
    class_shares: tuple[float, float, float] = (1.0, 1.0, 0.5)

    def __post_init__(self) -> None:
        _positive(
            "BatchingConfig",
            max_batch_size=self.max_batch_size,
            max_queue=self.max_queue,
            retry_after_s=self.retry_after_s,
        )
        if not self.max_delay_ms >= 0:
            raise ValueError(f"BatchingConfig.max_delay_ms must be >= 0, got {self.max_delay_ms}")
        if len(self.class_shares) != len(PRIORITIES) or not all(
            0 < share <= 1 for share in self.class_shares
        ):
            raise ValueError(
                "BatchingConfig.class_shares must give critical, normal and batch a share of "
                f"max_queue within (0, 1], got {self.class_shares}"
            )

    def class_limit(self, priority: int) -> int:
        """How many queued requests a class-``priority`` request may find and still queue."""
        return max(1, int(self.max_queue * self.class_shares[priority]))

    @property
    def max_delay_s(self) -> float:
        return self.max_delay_ms / 1000.0


def cpu_threads(requested: int = 0, cores: int | None = None) -> int:
    """torch's intra-op threads for CPU inference: ``requested``, or (0) half the cores, at
    least one. The latency gate times models with the same count, so it measures what serves.
    """
    if requested > 0:
        return requested
    return max(1, (cores or os.cpu_count() or 2) // 2)


@dataclass(frozen=True)
class CachePolicy:
    """A model's prediction cache, from its policy (``serving: {cache: {ttl_s, max_entries}}``).

    Each served version keeps up to ``max_entries`` answers for ``ttl_s`` seconds, in the
    replica's memory. With ``shared`` the replicas also share their answers through the
    replica's Redis (`SharedCacheConfig`), each kept there ``ttl_s`` seconds.
    """

    ttl_s: float = 60.0
    max_entries: int = 10_000
    shared: bool = False

    def __post_init__(self) -> None:
        _positive("CachePolicy", ttl_s=self.ttl_s, max_entries=self.max_entries)


@dataclass(frozen=True)
class SharedCacheConfig:
    """The Redis a replica shares prediction caches through (`mlcp serve --cache-redis-url`).

    A Redis call that takes longer than ``timeout_ms`` fails; after a failure Redis is skipped
    for ``cooldown_s`` (requests use the local tier and the model). At most
    ``max_pending_writes`` writes are in flight; past that new answers are not shared.
    """

    url: str
    timeout_ms: float = 50.0
    cooldown_s: float = 5.0
    prefix: str = "mlcp:pred:"
    max_pending_writes: int = 256

    def __post_init__(self) -> None:
        if not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"SharedCacheConfig.url must be redis://host:port[/db], got {self.url!r}"
            )
        _positive(
            "SharedCacheConfig",
            timeout_ms=self.timeout_ms,
            cooldown_s=self.cooldown_s,
            max_pending_writes=self.max_pending_writes,
        )


@dataclass(frozen=True)
class RateLimit:
    """``rate_per_s`` requests a second on average, ``burst`` at once (the bucket's size)."""

    rate_per_s: float
    burst: float = 0.0  # 0: one second's worth

    def __post_init__(self) -> None:
        if not self.rate_per_s > 0 or self.burst < 0:
            raise ValueError(
                f"a client limit needs rate_per_s > 0 and burst >= 0, got {self.rate_per_s}, "
                f"{self.burst}"
            )

    @property
    def size(self) -> float:
        return self.burst or max(1.0, self.rate_per_s)


@dataclass(frozen=True)
class ClientPolicy:
    """A replica's client settings (`mlcp serve`): the default per-client ``rate`` (None: no
    limit), limits and classes of named clients, and how many buckets are kept."""

    rate: RateLimit | None = None
    rates: Mapping[str, RateLimit] = field(default_factory=dict)
    classes: Mapping[str, str] = field(default_factory=dict)
    max_clients: int = 100_000

    def __post_init__(self) -> None:
        bad = {c: k for c, k in self.classes.items() if k not in PRIORITIES}
        if bad:
            raise ValueError(f"client classes must be one of {PRIORITIES}, got {bad}")


@dataclass(frozen=True)
class ServingPolicy:
    """What a model's policy says about serving it (``serving:`` in its policy file); the
    loader hands it over with each version (`serving.spec.ModelSpec.serving`)."""

    cache: CachePolicy | None = None  # None: no prediction cache (the default)
    rate: RateLimit | None = None  # per client, unless `mlcp serve` names the client's own
    priority: int = NORMAL  # the class of a request that names none


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how a version runs: ``device`` is ``auto`` (CUDA when present), ``cpu``,
    ``cuda`` or ``cuda:N``; ``dtype`` casts the weights and inputs (half precision on GPU)."""

    device: str = "auto"
    dtype: str = "float32"
    # Batch sizes run once before the version reports ready; empty: powers of two up to the
    # batcher's max_batch_size.
    warmup_batch_sizes: tuple[int, ...] = ()
    # torch's intra-op threads on the CPU (process-wide); 0: half the cores, at least one.
    cpu_threads: int = 0

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"RuntimeConfig.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(
                f"RuntimeConfig.device must be auto, cpu, cuda or cuda:N, got {self.device!r}"
            )
        if self.cpu_threads < 0:
            raise ValueError(f"RuntimeConfig.cpu_threads must be >= 0, got {self.cpu_threads}")
        if any(size < 1 for size in self.warmup_batch_sizes):
            raise ValueError("RuntimeConfig.warmup_batch_sizes must all be >= 1")


@dataclass(frozen=True)
class ServerConfig:
    """The HTTP tier: request limits, how often desired state is read, how windows are cut."""

    batching: BatchingConfig = field(default_factory=BatchingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    default_timeout_ms: float = 10_000.0  # a request without X-Request-Timeout-Ms gets this
    max_body_bytes: int = 8 << 20
    poll_s: float = 1.0  # desired-state poll period (NOTIFY, where available, wakes it sooner)
    window_s: float = 60.0  # per-version report window for the rollback controller
    replica: str = ""  # names this replica in window reports; default host:pid
    models: tuple[str, ...] = ()  # serve only these models; empty: every model with a champion
    # One JSON line per request (about a tenth of a small model's per-request cost); without
    # it only failures (5xx) are logged. Prometheus counts every request either way.
    access_log: bool = False
    # A champion replaced by a promotion stays loaded (no traffic) this long, so rolling
    # back to it is a route flip, not a cold load. 0: drop it at once.
    keep_warm_s: float = 600.0
    heartbeat_s: float = 5.0  # how often the replica says what it serves (and after a change)
    # Windows kept while the database can't take them; past this the oldest are dropped.
    max_pending_windows: int = 10_000
    # A version that failed to load is retried after load_retry_s, doubling up to 60 s.
    load_retry_s: float = 1.0
    clients: ClientPolicy = field(default_factory=ClientPolicy)  # classes and rate limits
    # Where versions whose policy says ``cache: {shared: true}`` share their answers; None:
    # they keep a local cache only (and the replica says so once).
    shared_cache: SharedCacheConfig | None = None
    # What an hour of the device costs (any currency): /metrics then shows the cost of 1,000
    # predictions per version. 0: cost is not shown (device-seconds still are).
    device_hour_price: float = 0.0
    # The busy gauge (mlcp_serving_busy): over the last busy_window_s, the larger of device
    # utilisation and queue delay over queue_budget_ms (the wait a request can afford).
    busy_window_s: float = 10.0
    queue_budget_ms: float = 50.0
    # While a critical-class request arrived in the last second, batch-class ones
    # are refused at the door (503 + Retry-After, before their body is read) when this many
    # are already in flight, or when the event loop runs shed_batch_at_lag_ms late
    # (serving.door): only not taking the flood in leaves room for the others. 0: off.
    max_batch_inflight: int = 2
    shed_batch_at_lag_ms: float = 10.0

    def __post_init__(self) -> None:
        _positive(
            "ServerConfig",
            default_timeout_ms=self.default_timeout_ms,
            max_body_bytes=self.max_body_bytes,
            poll_s=self.poll_s,
            window_s=self.window_s,
            heartbeat_s=self.heartbeat_s,
            max_pending_windows=self.max_pending_windows,
            load_retry_s=self.load_retry_s,
            busy_window_s=self.busy_window_s,
            queue_budget_ms=self.queue_budget_ms,
        )
        if self.max_batch_inflight < 0:
            raise ValueError(
                f"ServerConfig.max_batch_inflight must be >= 0, got {self.max_batch_inflight}"
            )
        if not self.shed_batch_at_lag_ms >= 0:
            raise ValueError(
                f"ServerConfig.shed_batch_at_lag_ms must be >= 0, got {self.shed_batch_at_lag_ms}"
            )
        if not self.keep_warm_s >= 0:
            raise ValueError(f"ServerConfig.keep_warm_s must be >= 0, got {self.keep_warm_s}")
