"""Reading a model and its input example from files, for ``mlcp models register``."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from registry.errors import InvalidModel, InvalidRegistration, UnsafeModel, first_line

if TYPE_CHECKING:
    import torch

_HOW = (
    "save the whole module with torch.save(model, path) or an exported program with "
    "torch.export.save(torch.export.export(model, (x,)), path)"
)
# Where the model's class lives: the 3 lines that make a file anyone can load without it.
EXPORT_LINES = (
    "program = torch.export.export(model.eval(), (x,)); "
    'torch.export.save(program, "model.pt2"); '
    "mlcp models register NAME --model model.pt2 --input-example x.npy"
)


def load_model_file(path: Path, *, unsafe_allow_pickle: bool = False) -> torch.nn.Module:
    """A torch module from a ``torch.export.save``'d program (checked as data first, see
    `registry.pt2`), or, only with ``unsafe_allow_pickle``, a ``torch.save``'d module.

    ``torch.save`` files are unpickled, which runs whatever code they hold: the CLI passes
    ``unsafe_allow_pickle`` only on ``--unsafe-allow-pickle``; the REST API never does.
    """
    from registry.archive import is_exported_archive
    from registry.pt2 import check_pt2

    if not path.is_file():
        raise InvalidModel(str(path), "no such file")
    if not zipfile.is_zipfile(path):
        raise InvalidModel(str(path), f"not a torch archive; {_HOW}")
    if is_exported_archive(path):
        check_pt2(path)
        return load_checked_pt2(path, str(path))
    if not unsafe_allow_pickle:
        raise UnsafeModel(
            str(path),
            "it is a torch.save pickle, and unpickling runs whatever code it holds; export it "
            f"instead ({EXPORT_LINES}), or, for a file you made yourself, pass "
            "--unsafe-allow-pickle",
        )
    return _unpickle_module(path)


def load_exported_file(path: Path, source: str) -> torch.nn.Module:
    """What the control API loads from a client: a torch.export archive checked as data
    (`registry.pt2`), never a pickle, with errors naming ``source`` (the request's field)."""
    from registry.archive import is_exported_archive
    from registry.pt2 import check_pt2

    if not zipfile.is_zipfile(path):
        raise InvalidModel(source, f"not a torch.export archive; {EXPORT_LINES}")
    if not is_exported_archive(path):
        raise UnsafeModel(
            source,
            "only torch.export programs are accepted here (a pickled module would run code on "
            f"the server): {EXPORT_LINES}",
        )
    check_pt2(path, source=source)
    return load_checked_pt2(path, source)


def load_checked_pt2(path: Path, source: str) -> torch.nn.Module:
    """``torch.export.load(path).module()`` for an archive `registry.pt2.check_pt2` passed
    (the same module rebuilt by `registry.pt2_program` when the program is plain ATen, which
    spares torch's deserializer and its ~1 s import); torch's failures as one InvalidModel
    line (its logged traceback kept out of stderr)."""
    import logging

    import torch

    from registry.pt2_program import load_program

    rebuilt = load_program(path)
    if rebuilt is not None:
        return rebuilt

    quiet = logging.getLogger("torch.export")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # it logs a traceback before its own fallback fails
    try:
        return torch.export.load(str(path)).module()
    except Exception as exc:  # torch raises many types for corrupt or foreign archives
        raise InvalidModel(source, f"torch cannot load it ({first_line(exc)}); {_HOW}") from exc
    finally:
        quiet.setLevel(level)


def _unpickle_module(path: Path) -> torch.nn.Module:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except AttributeError as exc:
        if "Can't get attribute" in str(exc) and "__main__" in str(exc):
            raise InvalidModel(
                str(path),
                f"it was pickled from a script ({first_line(exc)}): unpickling needs that "
                f"class, defined in the module that saved it; export it with torch.export "
                f"where the class is defined, so it loads without your code: {EXPORT_LINES}",
            ) from exc
        raise InvalidModel(str(path), f"torch cannot load it ({first_line(exc)}); {_HOW}") from exc
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
