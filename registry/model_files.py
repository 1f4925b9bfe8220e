"""Reading a model and its input example from files, for ``mlcp models register``."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from registry.errors import InvalidModel, InvalidRegistration, first_line

if TYPE_CHECKING:
    import torch

_HOW = (
    "save the whole module with torch.save(model, path) or an exported program with "
    "torch.export.save(torch.export.export(model, (x,)), path)"
)


def load_model_file(path: Path, allow_pickle: bool = True) -> torch.nn.Module:
    """A torch module from a ``torch.save``'d module or a ``torch.export.save``'d program.

    ``torch.save`` files are unpickled, which runs code: register only files you trust.
    ``allow_pickle=False`` (what the REST API uses) accepts exported programs only.
    """
    import torch

    if not path.is_file():
        raise InvalidModel(str(path), "no such file")
    if not zipfile.is_zipfile(path):
        raise InvalidModel(str(path), f"not a torch archive; {_HOW}")
    with zipfile.ZipFile(path) as archive:
        exported = any(
            n.endswith(("archive_format", "models/model.json")) for n in archive.namelist()
        )
    if not exported and not allow_pickle:
        raise InvalidModel(
            str(path),
            "only torch.export programs are accepted here (a pickled module would run code on "
            "the server): torch.export.save(torch.export.export(model, (x,)), path)",
        )
    try:
        if exported:
            return torch.export.load(str(path)).module()
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt or foreign archives
        raise InvalidModel(str(path), f"torch cannot load it ({first_line(exc)}); {_HOW}") from exc
    if isinstance(obj, torch.jit.ScriptModule):
        raise InvalidModel(str(path), f"TorchScript modules can't be exported to pt2; {_HOW}")
    if isinstance(obj, torch.nn.Module):
        return obj
    if isinstance(obj, dict):
        raise InvalidModel(str(path), f"it holds a state_dict (weights only); {_HOW}")
    raise InvalidModel(str(path), f"it holds a {type(obj).__name__}, not a module; {_HOW}")


def load_input_example(path: Path) -> np.ndarray:
    """A batch of example inputs from ``.npy``, or the numeric columns of parquet/CSV."""
    if not path.is_file():
        raise InvalidRegistration("input example", f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InvalidRegistration("input example", f"{path}: {first_line(exc)}") from exc
    elif suffix in (".parquet", ".csv"):
        import pandas as pd

        try:
            frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise InvalidRegistration("input example", f"{path}: {first_line(exc)}") from exc
        numeric = frame.select_dtypes("number")
        if numeric.shape[1] == 0:
            raise InvalidRegistration("input example", f"{path} has no numeric columns")
        array = numeric.to_numpy(dtype=np.float32)
    else:
        raise InvalidRegistration(
            "input example", f"{path}: unsupported type {suffix!r}; use .npy, .parquet or .csv"
        )
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    return array
