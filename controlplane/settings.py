"""Typed settings: ``MLCP_*`` environment variables over an optional ``mlcp.toml``.

The embedded default keeps every store under ``./.mlcp/``: the control-plane database
(``controlplane.db``), MLflow's tracking and registry database (``mlflow.db``) and its
artifacts (``artifacts/``). Production points the URLs at PostgreSQL and an MLflow server.

    settings = Settings()                      # environment + ./mlcp.toml
    settings = Settings(home=Path("/tmp/x"))   # explicit values win
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from controlplane.errors import SettingsError

ENV_PREFIX = "MLCP_"
_DB_SCHEMES = ("sqlite", "postgresql")
_MLFLOW_SCHEMES = ("sqlite", "postgresql", "http", "https", "databricks")


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


def _toml_file() -> Path:
    return Path(os.environ.get(f"{ENV_PREFIX}CONFIG", "mlcp.toml"))


class Settings(BaseSettings):
    """Every URL and knob mlcp reads. Validated at construction; see ``load_settings``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=True
    )

    home: Path = Field(
        default=Path(".mlcp"),
        description="where the embedded stores live (and uploads, evaluations, Feast's "
        "generated feature_store.yaml)",
    )
    database_url: str = Field(
        default="",
        description="the control-plane database: default sqlite:///$MLCP_HOME/controlplane.db; "
        "or postgresql://user@host:5432/db",
    )
    mlflow_tracking_uri: str = Field(
        default="",
        description="MLflow's tracking store: default sqlite:///$MLCP_HOME/mlflow.db; or "
        "postgresql://..., or an MLflow server http(s)://host:5000",
    )
    mlflow_registry_uri: str = Field(
        default="", description="MLflow's model registry; default: the tracking URI"
    )
    artifact_root: str = Field(
        default="",
        description="where new MLflow experiments put artifacts: default "
        "file://$MLCP_HOME/artifacts; mlflow-artifacts:/... through an MLflow server",
    )
    actor: str = Field(
        default_factory=_default_actor,
        description="who the audit log names for local commands (default: the OS user); the "
        "API names the token's owner instead",
    )
    feast_project: str = Field(
        default="mlcp", pattern=r"^[a-z][a-z0-9_]{0,62}$", description="the Feast project name"
    )
    feast_registry: str = Field(
        default="",
        description="Feast's registry: default the file $MLCP_HOME/feast/registry.db; or "
        "postgresql://... (Feast's SQL registry)",
    )
    feast_online_store: str = Field(
        default="",
        description="Feast's online store: default the SQLite file $MLCP_HOME/feast/online.db; "
        "or redis://[:password@]host:port[/db]",
    )
    # Where feature caches learn that a materialization landed: the control-plane database
    # (every replica polls it) or, with many replicas, Redis (RedisGenerations).
    feature_generations: str = Field(
        default="database",
        description="where materializations announce new data to every feature cache: "
        "database (the control-plane database) or redis://host:port[/db] (RedisGenerations: "
        "spares the database every replica's polls)",
    )
    cache_redis_url: str = Field(
        default="",
        description="`mlcp serve`: the Redis where replicas share prediction caches (models "
        "whose policy says cache: {shared: true}), redis://host:port[/db]; unset: each "
        "replica keeps its cache to itself",
    )
    db_connect_timeout_s: float = Field(
        default=5.0, gt=0, le=120, description="fail fast on an unreachable database (seconds)"
    )
    # PostgreSQL's statement_timeout for every statement (0: none); `mlcp serve` sets its own.
    db_statement_timeout_s: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="PostgreSQL statement and lock timeout in seconds, 0 for none; `mlcp "
        "serve` uses its --db-timeout-s (5) when this is 0",
    )
    machine_class: str = Field(
        default="",
        max_length=200,
        description="this machine's name in latency budgets; default: the GPU's model "
        "(nvidia-h200), or cpu-<cores>",
    )
    # Remote mode: with both set, every command but the store-level ones goes through the
    # control API, which names the token's owner in the audit log.
    api_url: str = Field(
        default="",
        description="remote mode: the control API, http(s)://host:port (needs MLCP_TOKEN)",
    )
    token: SecretStr = Field(
        default=SecretStr(""),
        description="remote mode: a token from `mlcp tokens create` (masked in `mlcp settings`)",
    )
    api_retries: int = Field(
        default=5,
        ge=0,
        le=20,
        description="remote mode: retries of a call that is safe to repeat (backoff from 0.5 s "
        "doubling to 8 s, Retry-After honoured)",
    )
    api_timeout_s: float = Field(
        default=600.0,
        gt=0,
        le=3600,
        description="remote mode: one API call, in seconds (a promotion runs the gates)",
    )
    # Server side: the largest file `mlcp api` takes in one upload (a model, a dataset).
    api_max_upload_mb: int = Field(
        default=2048,
        ge=1,
        le=1 << 20,
        description="server side: the largest upload `mlcp api` takes (MB), kept under "
        "$MLCP_HOME/uploads",
    )
    api_max_body_kb: int = Field(
        default=4096,
        ge=1,
        le=1 << 20,
        description="server side: the largest JSON body any other route reads (KB): a policy, "
        "a registration with its model inline; larger models go as uploads",
    )
    api_data_root: Path | None = Field(
        default=None,
        description="server side: the folder whose .parquet/.csv files POST .../evaluate may "
        "name by path (relative to it); unset, that route reads no path (upload the file)",
    )
    device_hour_price: float = Field(
        default=0.0,
        ge=0,
        le=1_000_000,
        description="what an hour of a serving device costs (any currency): `mlcp deployments` "
        "and /metrics then show the cost of 1,000 predictions per version; 0: not shown",
    )

    @property
    def remote(self) -> bool:
        """True when commands go through the control API (MLCP_API_URL and MLCP_TOKEN)."""
        return bool(self.api_url)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, _toml_file()))

    @model_validator(mode="before")
    @classmethod
    def _drop_empty(cls, data: Any) -> Any:
        # MLCP_DATABASE_URL="" means "use the default", as an unset variable does.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v != ""}
        return data

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, url: str) -> str:
        if not url:
            return url
        scheme = url.split(":", 1)[0].split("+", 1)[0]
        if scheme == "postgres":
            scheme = "postgresql"
        if scheme not in _DB_SCHEMES or "://" not in url:
            raise ValueError(
                f"unsupported database URL {redact_url(url)!r}; use sqlite:///path/to/file.db "
                "or postgresql://user@host:5432/dbname"
            )
        return _with_psycopg_driver(url)

    @field_validator("feast_registry")
    @classmethod
    def _check_feast_registry(cls, value: str) -> str:
        if value.startswith(("postgresql://", "postgres://")):
            return _with_psycopg_driver(value)
        if "://" in value and not value.startswith("postgresql+psycopg://"):
            raise ValueError(
                f"unsupported Feast registry {redact_url(value)!r}; use a file path or "
                "postgresql://user@host/db (Feast's SQL registry)"
            )
        return value

    @field_validator("feast_online_store")
    @classmethod
    def _check_feast_online(cls, value: str) -> str:
        if "://" in value and not value.startswith("redis://"):
            raise ValueError(
                f"unsupported Feast online store {redact_url(value)!r}; use a SQLite file path "
                "or redis://host:port"
            )
        return value

    @field_validator("feature_generations")
    @classmethod
    def _check_feature_generations(cls, value: str) -> str:
        if value != "database" and not value.startswith(("redis://", "rediss://")):
            raise ValueError(
                f"unsupported generations store {redact_url(value)!r}; use database (the "
                "control-plane database) or redis://host:port"
            )
        return value

    @field_validator("cache_redis_url")
    @classmethod
    def _check_cache_redis_url(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"unsupported prediction cache store {redact_url(value)!r}; use "
                "redis://[:password@]host:port[/db]"
            )
        return value

    @field_validator("api_url")
    @classmethod
    def _check_api_url(cls, url: str) -> str:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s):// URL, e.g. http://mlcp.internal:8080")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _check_remote(self) -> Settings:
        has_token = bool(self.token.get_secret_value())
        # SettingsError, not ValueError: pydantic lets it through, naming the right variable.
        if self.api_url and not has_token:
            raise SettingsError(
                f"{ENV_PREFIX}TOKEN",
                "MLCP_API_URL is set but no token: create one where the control plane runs "
                "(`mlcp tokens create ci --role promoter`) and set MLCP_TOKEN",
            )
        if has_token and not self.api_url:
            raise SettingsError(
                f"{ENV_PREFIX}API_URL", "MLCP_TOKEN is set but not the API's URL: set it too"
            )
        return self

    @field_validator("mlflow_tracking_uri", "mlflow_registry_uri")
    @classmethod
    def _check_mlflow_uri(cls, uri: str) -> str:
        if not uri:
            return uri
        scheme = uri.split(":", 1)[0].split("+", 1)[0]
        if scheme not in _MLFLOW_SCHEMES:
            raise ValueError(
                f"unsupported MLflow URI {redact_url(uri)!r}; use sqlite:///path/mlflow.db, "
                "postgresql://host/db or http(s)://mlflow-server"
            )
        return _with_psycopg_driver(uri)

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        home = self.home.expanduser().resolve()
        fill = {
            "home": home,
            "database_url": self.database_url or f"sqlite:///{home / 'controlplane.db'}",
            "mlflow_tracking_uri": self.mlflow_tracking_uri or f"sqlite:///{home / 'mlflow.db'}",
            "artifact_root": self.artifact_root or (home / "artifacts").as_uri(),
        }
        fill["mlflow_registry_uri"] = self.mlflow_registry_uri or fill["mlflow_tracking_uri"]
        fill["feast_registry"] = self.feast_registry or str(home / "feast" / "registry.db")
        fill["feast_online_store"] = self.feast_online_store or str(home / "feast" / "online.db")
        for key, value in fill.items():
            object.__setattr__(self, key, value)
        return self

    def redacted(self) -> dict[str, str]:
        """The settings as strings, passwords masked: safe to print and to log."""
        return {
            k: redact_url(str(v)) if isinstance(v, str) else str(v)
            for k, v in self.model_dump().items()
        }


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning a validation failure into a SettingsError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "settings"
        why = str(err["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"{ENV_PREFIX}{field.upper()}", why) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed mlcp.toml
        raise SettingsError(str(_toml_file()), f"cannot read the settings file: {exc}") from None


def _with_psycopg_driver(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def redact_url(url: str) -> str:
    """Mask the password in ``scheme://user:password@host``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"
