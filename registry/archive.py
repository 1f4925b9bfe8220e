"""A model as a torch.export archive: what a remote client uploads instead of a pickle.

    archive = export_archive(model, example)   # bytes of torch.export.save(...)

The batch dimension is exported dynamic (the example has >= 2 rows), so the program the
server loads takes any batch size, as registration's own export does. Nothing here unpickles:
the server loads the archive with ``load_model_file(path)``,
which checks it as data first (`registry.pt2`).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from registry.errors import InvalidModel, first_line

if TYPE_CHECKING:
    import numpy as np
    import torch


def is_exported_archive(path: Path) -> bool:
    """True for a ``torch.export.save`` archive (a zip with torch.export's own manifest)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith(("archive_format", "models/model.json")) for n in archive.namelist())


_ADVICE = (
    "make forward() free of data-dependent Python control flow (the control API takes "
    "exported programs only)"
)


def export_archive(model: torch.nn.Module, example: np.ndarray, advice: str = _ADVICE) -> bytes:
    """``model`` exported on ``example`` with a dynamic batch dimension, as archive bytes; a
    module torch cannot trace is an InvalidModel ending with ``advice``."""
    import contextlib

    import torch

    with contextlib.suppress(NotImplementedError):  # an exported program refuses eval()
        model.eval()
    x = torch.from_numpy(example)
    try:
        program = torch.export.export(
            model, (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},), strict=False
        )
    except Exception as exc:  # torch raises many types for code it cannot trace
        raise InvalidModel(
            type(model).__name__,
            f"torch.export could not trace it ({first_line(exc)}); {advice}",
        ) from exc
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()
