"""The composition root: builds the database, the registry and their wiring from Settings.

    with ControlPlane.open() as cp:
        version = cp.registry.register(request)
        refs = [v.ref for v in cp.registry.versions()]

Nothing heavy happens at import: mlflow is imported when the registry first needs it.
"""

from __future__ import annotations

from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Self

from sqlalchemy.orm import Session, sessionmaker

from controlplane.db.engine import check_connection, make_engine
from controlplane.db.lineage_store import DbLineageStore
from controlplane.db.migrate import ensure_schema
from controlplane.registration import RegistrationRules
from controlplane.settings import Settings, load_settings
from registry import Registrar

if TYPE_CHECKING:
    from controlplane.evaluations import EvaluationService
    from controlplane.feature_store import ManagedFeatures
    from controlplane.policy import PolicyStore
    from controlplane.promotion import PromotionService
    from controlplane.rollout import RolloutService
    from controlplane.tokens import TokenStore
    from registry.mlflow_backend import MlflowBackend


class ControlPlane:
    """One control plane: its database, its lineage store and the registry on MLflow."""

    def __init__(self, settings: Settings, *, auto_create_schema: bool = True) -> None:
        self.settings = settings
        self.engine = make_engine(
            settings.database_url, settings.db_connect_timeout_s, settings.db_statement_timeout_s
        )
        try:
            check_connection(self.engine)
            self.created_schema = ensure_schema(self.engine, auto_create=auto_create_schema)
        except BaseException:
            self.engine.dispose()
            raise
        self.sessions: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)
        self.lineage = DbLineageStore(self.sessions)
        # Every registration (CLI, API, Python) meets the same rules: see registration.py.
        self.registry = Registrar(
            self.lineage, self._mlflow_backend, rules=RegistrationRules(lambda: self.features)
        )

    # Each service is built (and its module imported) on first use: a command pays only for
    # what it touches (`mlcp audit list` needs none of them; `mlcp promote` no Feast).
    @cached_property
    def evaluations(self) -> EvaluationService:
        from controlplane.evaluations import EvaluationService

        return EvaluationService(self.sessions, self.registry, self.settings.actor)

    @cached_property
    def policies(self) -> PolicyStore:
        from controlplane.policy import PolicyStore

        return PolicyStore(self.sessions)

    @cached_property
    def tokens(self) -> TokenStore:
        from controlplane.tokens import TokenStore

        return TokenStore(self.sessions)

    @cached_property
    def features(self) -> ManagedFeatures:
        from controlplane.feature_store import ManagedFeatures

        return ManagedFeatures(self.settings, self.sessions)

    @cached_property
    def promotions(self) -> PromotionService:
        from controlplane.promotion import PromotionService

        return PromotionService(
            self.sessions,
            self.registry,
            self.policies,
            self.evaluations,
            machine_class=self.settings.machine_class or None,
        )

    @cached_property
    def rollouts(self) -> RolloutService:
        from controlplane.rollout import RolloutService

        return RolloutService(self.sessions, self.registry)

    @classmethod
    def open(cls, **overrides: object) -> Self:
        return cls(load_settings(**overrides))

    def _mlflow_backend(self) -> MlflowBackend:
        from registry.mlflow_backend import MlflowBackend

        s = self.settings
        return MlflowBackend(
            s.mlflow_tracking_uri,
            s.mlflow_registry_uri,
            artifact_root=s.artifact_root,
            connect_timeout_s=s.db_connect_timeout_s,
        )

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
