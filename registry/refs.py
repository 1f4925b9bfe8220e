"""Model references: ``NAME@VERSION`` (``churn@3``) and ``NAME@ALIAS`` (``churn@champion``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.errors import InvalidModelRef

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,254}$")


def validate_model_name(name: str) -> str:
    """Return ``name`` if it is a valid registered-model name, else raise InvalidModelRef."""
    if not _NAME.match(name):
        raise InvalidModelRef(
            name, "a model name is 1-128 letters, digits, '_', '.', '-' and starts alphanumeric"
        )
    if name.startswith("m-"):
        # MLflow 3 reads models:/m-<id> as a logged model's id, not a registered model.
        raise InvalidModelRef(name, "names starting with 'm-' clash with MLflow's logged-model ids")
    return name


@dataclass(frozen=True)
class ModelRef:
    """A reference to one model version, by number or by alias.

    >>> ModelRef.parse("churn@3")
    ModelRef(name='churn', version=3, alias=None)
    """

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        name, sep, target = text.strip().partition("@")
        if not sep or not target:
            raise InvalidModelRef(text, "the '@VERSION' or '@ALIAS' part is missing")
        validate_model_name(name)
        if target.isdigit():
            version = int(target)
            if version < 1:
                raise InvalidModelRef(text, "versions start at 1")
            return cls(name=name, version=version)
        if target.lower().startswith("v") and target[1:].isdigit():
            raise InvalidModelRef(text, f"write the bare number ({name}@{target[1:]})")
        if not _ALIAS.match(target):
            raise InvalidModelRef(text, f"{target!r} is neither a version number nor an alias")
        return cls(name=name, alias=target)

    def __str__(self) -> str:
        return f"{self.name}@{self.version if self.version is not None else self.alias}"
