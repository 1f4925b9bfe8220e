"""Model references: ``NAME@VERSION`` (``churn@3``) and ``NAME@ALIAS`` (``churn@champion``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from registry.errors import InvalidModelRef

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,254}$")
_DIGITS = re.compile(r"^[0-9]+$")  # ASCII only: str.isdigit() also takes "³" and "٣"
# The largest version number a store keeps (a 32-bit integer column, as MLflow's is).
MAX_VERSION = 2**31 - 1


def parse_version(text: str, ref: str | None = None) -> int:
    """A version number from text: ASCII digits, 1..MAX_VERSION; else InvalidModelRef."""
    if not _DIGITS.match(text):
        raise InvalidModelRef(ref or text, f"{text!r} is not a version number (digits 0-9)")
    if len(text) > 10 or not 1 <= int(text) <= MAX_VERSION:
        raise InvalidModelRef(ref or text, f"versions run from 1 to {MAX_VERSION}")
    return int(text)


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
        if target.isdigit():  # any script's digits: refused below unless ASCII
            return cls(name=name, version=parse_version(target, text))
        if target.lower().startswith("v") and _DIGITS.match(target[1:]):
            raise InvalidModelRef(text, f"write the bare number ({name}@{target[1:]})")
        if not _ALIAS.match(target):
            raise InvalidModelRef(text, f"{target!r} is neither a version number nor an alias")
        return cls(name=name, alias=target)

    def __str__(self) -> str:
        return f"{self.name}@{self.version if self.version is not None else self.alias}"
