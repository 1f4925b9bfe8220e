from __future__ import annotations

import pytest

from registry import InvalidModelRef, ModelRef


def test_parse_version_number() -> None:
    assert ModelRef.parse("churn@3") == ModelRef(name="churn", version=3)


def test_parse_alias() -> None:
    assert ModelRef.parse("churn@champion") == ModelRef(name="churn", alias="champion")


def test_str_round_trips() -> None:
    for text in ("churn@3", "fraud.v2@challenger"):
        assert str(ModelRef.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("churn", "missing"),
        ("churn@", "missing"),
        ("churn@0", "run from 1 to 2147483647"),
        ("churn@9223372036854775808", "run from 1 to 2147483647"),
        ("churn@\u00b3", "not a version number"),
        ("churn@v3", "churn@3"),
        ("@3", "model name"),
        ("churn@cham pion", "neither"),
    ],
)
def test_bad_refs_say_how_to_fix(text: str, hint: str) -> None:
    with pytest.raises(InvalidModelRef, match="NAME@VERSION") as err:
        ModelRef.parse(text)
    assert hint in str(err.value)
