from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features import InvalidDataset, fingerprint_file, fingerprint_frame


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", None], "label": [0, 1, 0]})


def test_same_rows_same_fingerprint(frame: pd.DataFrame) -> None:
    assert fingerprint_frame(frame) == fingerprint_frame(frame.copy())
    assert fingerprint_frame(frame).rows == 3
    assert fingerprint_frame(frame).columns == ("a", "b", "label")


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.assign(a=[1.0, 2.0, 3.5]),  # one value
        lambda f: f.iloc[::-1],  # row order
        lambda f: f[["b", "a", "label"]],  # column order
        lambda f: f.rename(columns={"a": "z"}),  # a name
        lambda f: f.astype({"label": "float64"}),  # a dtype
        lambda f: f.iloc[:2],  # a row dropped
    ],
)
def test_any_change_changes_the_fingerprint(frame: pd.DataFrame, change) -> None:
    assert fingerprint_frame(change(frame)).sha256 != fingerprint_frame(frame).sha256


def test_parquet_and_csv_files(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    assert fingerprint_file(tmp_path / "t.parquet") == fingerprint_frame(frame)
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert fingerprint_file(tmp_path / "t.csv").rows == 3


@pytest.mark.parametrize(("name", "expect"), [("t.json", "unsupported"), ("none.csv", "no such")])
def test_unreadable_files(tmp_path: Path, name: str, expect: str) -> None:
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(InvalidDataset, match=expect):
        fingerprint_file(tmp_path / name)


def test_corrupt_parquet(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(InvalidDataset, match="cannot be read"):
        fingerprint_file(tmp_path / "bad.parquet")
