"""Errors raised by the serving tier; ``serving.app`` maps them to HTTP in one place.

ServingError            root
├── InvalidInput        the request body is wrong (shape, dtype, NaN, unknown input)   400
│   └── UnknownEntities the feature store knows none of some entity keys               422
├── ModelNotFound       no such model or version is served here                        404
├── PayloadTooLarge     the body is over the configured limit                          413
├── ModelNotReady       the model is loading or draining                               503
├── Overloaded          the version's queue is full; carries ``retry_after_s``         503
│   └── Shed            a queued request dropped for a more urgent one                 503
├── RateLimited         the client is over its token bucket; ``retry_after_s``         429
├── FeaturesUnavailable the feature lookup failed for a reason the client can't fix    503
├── DeadlineExceeded    the request's deadline passed before it could be answered      504
├── ModelFailed         the model raised, or answered NaN/inf, on the request's rows   500
└── ModelLoadFailed     a version could not be loaded or warmed up (startup, reconcile)
"""

from __future__ import annotations


class ServingError(Exception):
    """Root of every error the serving tier raises."""

    status = 500

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class InvalidInput(ServingError):
    """The request is malformed: the message names the field and what is expected."""

    status = 400


class ModelNotFound(ServingError):
    """No model (or version) of that name is served by this replica."""

    status = 404

    def __init__(self, name: str, version: int | None = None, served: tuple[str, ...] = ()) -> None:
        self.name, self.version = name, version
        what = f"model '{name}'" if version is None else f"version {version} of model '{name}'"
        listed = ", ".join(served) if served else "none"
        super().__init__(f"{what} is not served here; served: {listed}")


class PayloadTooLarge(ServingError):
    """The request body is larger than ``ServerConfig.max_body_bytes``."""

    status = 413

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"request body is over {limit} bytes; send fewer rows per request")


class ModelNotReady(ServingError):
    """The version exists but is still loading, or is draining."""

    status = 503


class Overloaded(ServingError):
    """The version's queue is full (for the request's class); retry after ``retry_after_s``."""

    status = 503

    def __init__(
        self, ref: str, queued: int, retry_after_s: float, priority: str | None = None
    ) -> None:
        self.ref, self.queued, self.retry_after_s = ref, queued, retry_after_s
        self.priority = priority
        limit = f"the limit for {priority}-class requests" if priority else "its limit"
        super().__init__(
            f"{ref} has {queued} requests queued ({limit}); retry after {retry_after_s:g} s"
        )


class Shed(Overloaded):
    """A queued request dropped to make room for a more urgent class's request."""

    def __init__(self, ref: str, queued: int, retry_after_s: float, priority: str) -> None:
        super().__init__(ref, queued, retry_after_s, priority)
        self.message = (
            f"{ref} is overloaded: this {priority}-class request was shed to make room for "
            f"more urgent ones; retry after {retry_after_s:g} s"
        )
        self.args = (self.message,)


class RateLimited(ServingError):
    """The client sent more than its limit; retry after ``retry_after_s`` seconds."""

    status = 429

    def __init__(self, client: str, rate_per_s: float, retry_after_s: float) -> None:
        self.client, self.rate_per_s, self.retry_after_s = client, rate_per_s, retry_after_s
        super().__init__(
            f"client {client!r} is over its limit of {rate_per_s:g} requests/s; "
            f"retry after {retry_after_s:.2f} s"
        )


class FeaturesUnavailable(ServingError):
    """The online feature store could not be read and nothing fresh enough was cached."""

    status = 503


class DeadlineExceeded(ServingError):
    """The request's deadline passed (or could not be met) before it was computed."""

    status = 504

    def __init__(self, ref: str, budget_ms: float) -> None:
        self.ref, self.budget_ms = ref, budget_ms
        super().__init__(
            f"{ref} could not answer within the request's {budget_ms:g} ms deadline; "
            "retry with a longer X-Request-Timeout-Ms or fewer rows"
        )


class ModelFailed(ServingError):
    """The model raised on the batch, or its outputs for this request are not finite."""

    status = 500

    def __init__(self, ref: str, why: str) -> None:
        self.ref, self.why = ref, why
        super().__init__(f"{ref} failed on this request: {why}")


class ModelLoadFailed(ServingError):
    """Loading or warming up a version failed; the version takes no traffic."""

    def __init__(self, ref: str, why: str) -> None:
        self.ref, self.why = ref, why
        super().__init__(f"could not load {ref}: {why}")


class UnknownEntities(InvalidInput):
    """The online store has no features for some of the request's entities."""

    status = 422

    def __init__(self, service: str, entities: list[dict[str, object]]) -> None:
        self.service, self.entities = service, entities
        shown = ", ".join(str(e) for e in entities[:5]) + (" ..." if len(entities) > 5 else "")
        super().__init__(
            f"no features for {len(entities)} entit{'y' if len(entities) == 1 else 'ies'} in "
            f"{service}: {shown}; check the keys, or materialize the view that holds them"
        )
