"""Training-set fingerprints: a digest of the rows, so lineage can name the data exactly."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from features.errors import InvalidDataset

if TYPE_CHECKING:
    import pandas as pd

READERS = (".parquet", ".csv")


@dataclass(frozen=True)
class DatasetFingerprint:
    """sha256 over column names, dtypes and every value, in row order."""

    sha256: str
    rows: int
    columns: tuple[str, ...]


def fingerprint_frame(frame: pd.DataFrame) -> DatasetFingerprint:
    import pandas as pd

    h = hashlib.sha256()
    for name, dtype in frame.dtypes.items():
        h.update(f"{name}\0{dtype}\0".encode())
    if len(frame):
        values = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        h.update(values.tobytes())
    return DatasetFingerprint(
        sha256=h.hexdigest(), rows=len(frame), columns=tuple(str(c) for c in frame.columns)
    )


def read_dataset(path: Path) -> pd.DataFrame:
    """Read a parquet or CSV file; InvalidDataset with a fix when it can't be read."""
    import pandas as pd

    if not path.is_file():
        raise InvalidDataset(str(path), "no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InvalidDataset(str(path), f"cannot be read as {suffix[1:]}: {exc}") from exc
    raise InvalidDataset(str(path), f"unsupported file type {suffix!r}; use .parquet or .csv")


def fingerprint_file(path: Path) -> DatasetFingerprint:
    return fingerprint_frame(read_dataset(path))
