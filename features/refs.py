"""Versioned feature references: ``user_stats@2`` names version 2 of a feature view or service.

Each mlcp version is its own Feast object, named ``<name>__v<version>``: old versions stay
readable by the models pinned to them, online and offline alike (Feast's own versioning
is alpha and does not cover historical retrieval; see README, "Features").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from features.errors import InvalidFeatureRef

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_DIGITS = re.compile(r"^[0-9]{1,10}$")  # ASCII: str.isdigit() also takes "³"


@dataclass(frozen=True, order=True)
class VersionedRef:
    """``name@version``. ``VersionedRef.parse("user_stats@2").feast_name == "user_stats__v2"``."""

    name: str
    version: int

    @classmethod
    def parse(cls, text: str) -> VersionedRef:
        name, sep, version = text.strip().partition("@")
        if not sep or not _DIGITS.match(version) or not 1 <= int(version) <= 2**31 - 1:
            raise InvalidFeatureRef(
                text, "write NAME@VERSION with VERSION 1..2147483647 (user_stats@2)"
            )
        if not _NAME.match(name) or "__" in name:
            raise InvalidFeatureRef(
                text, "a name is lowercase letters, digits and single underscores, <= 63 chars"
            )
        return cls(name, int(version))

    @classmethod
    def from_feast_name(cls, feast_name: str) -> VersionedRef:
        name, sep, version = feast_name.rpartition("__v")
        if not sep or not _DIGITS.match(version):
            raise InvalidFeatureRef(feast_name, "not an mlcp-managed Feast object (<name>__v<N>)")
        return cls(name, int(version))

    @property
    def feast_name(self) -> str:
        return f"{self.name}__v{self.version}"

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"
