"""MLflow's pytorch flavor folder for a program that is already a torch.export archive.

    Model.log(name="model", flavor=registry.mlflow_pt2, flavor_name="mlflow.pytorch",
              archive=archive_bytes, signature=sig, input_example=x, pip_requirements=reqs)

``mlflow.pytorch.log_model(..., serialization_format="pt2")`` exports the module again with
``torch.export.export`` (about 1.5 s on a 2-core machine, most of it importing
``torch._dynamo``) and checks the requirements against every installed distribution (about
0.9 s), although a registration from a ``.pt2`` file already holds the exported program and
pins its requirements itself. This writes the folder that function writes, file for file
(``MLmodel`` with the ``pytorch`` and ``python_function`` flavors, ``data/model.pt2``, the input
example, ``requirements.txt``, ``conda.yaml``, ``python_env.yaml``), around the archive as given,
so ``mlflow.pytorch.load_model``, ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` load
it as their own. Model.log calls ``save_model`` and logs the folder as a LoggedModel.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

DATA = "data"  # mlflow.pytorch's model_data folder
ARCHIVE = "model.pt2"  # and the name its loader looks for there
CONDA, PYTHON_ENV, REQUIREMENTS = "conda.yaml", "python_env.yaml", "requirements.txt"


def save_model(
    path: str,
    mlflow_model: Any,
    *,
    archive: bytes,
    signature: Any,
    input_example: Any,
    pip_requirements: list[str],
    **_: Any,
) -> None:
    """Called by ``mlflow.models.Model.log`` with a fresh ``path`` and the model's MLmodel."""
    import mlflow
    import torch
    from mlflow import pyfunc
    from mlflow.models.utils import _save_example
    from mlflow.utils.environment import _mlflow_conda_env, _PythonEnv
    from mlflow.utils.file_utils import get_total_file_size

    os.makedirs(os.path.join(path, DATA))
    Path(path, DATA, ARCHIVE).write_bytes(archive)
    mlflow_model.signature = signature
    _save_example(mlflow_model, input_example, path)
    mlflow_model.add_flavor(
        "pytorch", model_data=DATA, pytorch_version=str(torch.__version__), code=None
    )
    pyfunc.add_to_model(
        mlflow_model,
        loader_module="mlflow.pytorch",
        data=DATA,
        pickle_module_name="mlflow.pytorch.pickle_module",
        code=None,
        conda_env=CONDA,
        python_env=PYTHON_ENV,
        model_config={"device": None},
    )
    if size := get_total_file_size(path):
        mlflow_model.model_size_bytes = size
    mlflow_model.save(os.path.join(path, "MLmodel"))
    requirements = list(pip_requirements)
    if not any(r.split("=")[0].strip().lower() == "mlflow" for r in requirements):
        requirements.insert(0, f"mlflow=={mlflow.__version__}")
    Path(path, REQUIREMENTS).write_text("\n".join(requirements))
    with open(os.path.join(path, CONDA), "w") as f:
        yaml.safe_dump(
            _mlflow_conda_env(additional_pip_deps=requirements), f, default_flow_style=False
        )
    _PythonEnv.current().to_yaml(os.path.join(path, PYTHON_ENV))
