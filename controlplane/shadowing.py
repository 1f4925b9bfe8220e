"""Files that shadow mlcp's packages. Python puts a script's own folder first on ``sys.path``,
so a ``features.py`` (or ``registry.py``, ``serving/``...) beside a training script is what
``import features`` finds, and mlcp fails far from the cause (``'features' is not a
package``). mlcp says so, naming the file, when the control plane is imported and when a
definitions file is applied.

    shadowed()                     # {"features": Path("/work/churn/features.py")}
    shadows_beside(Path("."))      # [Path("features.py")]
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

PACKAGES = ("controlplane", "features", "registry", "serving")
_HOME = Path(__file__).resolve().parents[1]  # the folder holding mlcp's packages


class ShadowedPackage(UserWarning):
    """A file or folder that ``import`` finds instead of one of mlcp's packages."""


def shadowed(
    modules: Mapping[str, ModuleType] = sys.modules, path: Sequence[str] | None = None
) -> dict[str, Path]:
    """Each of mlcp's packages that is (or would be) imported from somewhere else, with where."""
    found: dict[str, Path] = {}
    for name in PACKAGES:
        module = modules.get(name)
        if module is not None:
            origin = getattr(module, "__file__", None)
        else:
            # What `import NAME` would load: every finder in order (an editable install adds
            # one), or just these folders when ``path`` is given.
            spec = (
                importlib.util.find_spec(name)
                if path is None
                else importlib.machinery.PathFinder.find_spec(name, path)
            )
            origin = spec.origin if spec is not None else None
        if origin and not _ours(name, Path(origin)):
            found[name] = Path(origin)
    return found


def shadows_beside(folder: Path) -> list[Path]:
    """Files and packages in ``folder`` that a script run there would import instead of mlcp's."""
    out = []
    for name in PACKAGES:
        for candidate in (folder / f"{name}.py", folder / name / "__init__.py"):
            if candidate.is_file() and not _ours(name, candidate):
                out.append(candidate if candidate.name != "__init__.py" else candidate.parent)
    return out


def advice(name: str, where: Path) -> str:
    """One line: what shadows which package, what it breaks, and the fix."""
    kind = "folder" if where.name == "__init__.py" or where.is_dir() else "file"
    shown = where.parent if where.name == "__init__.py" else where
    return (
        f"the {kind} {shown} shadows mlcp's `{name}` package: a Python script run beside it "
        f"imports it instead (\"'{name}' is not a package\"); rename it, e.g. churn_{name}"
        f"{'.py' if kind == 'file' else ''}"
    )


def warn_if_shadowed() -> None:
    """Warn (``ShadowedPackage``) for each of mlcp's packages that would not be mlcp's own."""
    for name, where in shadowed().items():
        warnings.warn(advice(name, where), ShadowedPackage, stacklevel=3)


def _ours(name: str, origin: Path) -> bool:
    try:
        return origin.resolve() == (_HOME / name / "__init__.py").resolve()
    except OSError:
        return False
