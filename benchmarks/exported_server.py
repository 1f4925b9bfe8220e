"""Serve one torch.export archive with mlcp's serving tier alone: no control plane, no MLflow,
no Feast, no database. What the GPU benchmark runs on a bare GPU machine, with only the
wheels in benchmarks/gpu-wheels.txt beside torch.

    python benchmarks/exported_server.py --model model.pt2 --features 64 --port 8000 \\
        --device cuda --dtype bfloat16 --max-batch-size 256

The model is served as version 1 of ``--name`` (Open Inference Protocol v2 at /v2, metrics at
/metrics), through the same app, manager, batcher and runtime as ``mlcp serve``; only the
loader (the archive) and the desired state (that one version, forever) are this file's. It
prints one JSON line on stderr when it is ready, naming the packages it imported that a bare
machine lacks (none, or the run is not what it claims).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the serving package, without installing mlcp

# Packages a bare GPU machine does not have: serving must not need them.
CONTROL_PLANE_ONLY = ("mlflow", "feast", "great_expectations", "sqlalchemy", "controlplane")


class ArchiveLoader:
    """`serving.spec.ModelLoader` over one ``torch.export.save`` archive."""

    def __init__(self, path: Path, name: str, features: int) -> None:
        self.path, self.name, self.features = path, name, features

    def load(self, name: str, version: int) -> object:
        import torch

        from serving.errors import ModelLoadFailed
        from serving.spec import LoadedModel, ModelSpec, TensorSpec

        if (name, version) != (self.name, 1):
            raise ModelLoadFailed(f"{name}@{version}", f"this server holds only {self.name}@1")
        spec = ModelSpec(
            name=name,
            version=1,
            inputs=(TensorSpec("input", "FP32", (-1, self.features)),),
            outputs=(TensorSpec("output", "FP32", (-1, 1)),),
        )
        from registry.pt2 import check_pt2

        check_pt2(self.path)  # a file from the command line: read as data before torch loads it
        return LoadedModel(spec, torch.export.load(str(self.path)).module())


class OneVersion:
    """`serving.spec.DesiredStateSource`: version 1 of ``name`` is the champion, always."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._closed = threading.Event()

    def read(self) -> dict[str, object]:
        from serving.spec import Deployment

        return {self.name: Deployment(self.name, champion=1)}

    def wait(self, timeout_s: float) -> None:
        self._closed.wait(timeout_s)

    def close(self) -> None:
        self._closed.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a torch.export archive")
    parser.add_argument("--name", default="bench")
    parser.add_argument("--features", type=int, required=True, help="input width")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-delay-ms", type=float, default=2.0)
    parser.add_argument("--max-queue", type=int, default=1024)
    parser.add_argument("--max-body-mb", type=float, default=64.0)
    args = parser.parse_args()

    import uvicorn

    from serving.app import create_app
    from serving.config import BatchingConfig, RuntimeConfig, ServerConfig
    from serving.manager import ModelManager

    config = ServerConfig(
        batching=BatchingConfig(args.max_batch_size, args.max_delay_ms, args.max_queue),
        runtime=RuntimeConfig(device=args.device, dtype=args.dtype),
        max_body_bytes=int(args.max_body_mb * (1 << 20)),
        models=(args.name,),
    )
    manager = ModelManager(
        ArchiveLoader(args.model, args.name, args.features), OneVersion(args.name), config
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(manager), host=args.host, port=args.port, log_config=None, access_log=False
        )
    )

    def announce() -> None:  # once the manager has loaded and warmed the version
        while not manager.ready and not server.should_exit:
            threading.Event().wait(0.1)
        loaded = sorted({m.split(".")[0] for m in sys.modules} & set(CONTROL_PLANE_ONLY))
        print(json.dumps({"ready": True, "control_plane_imports": loaded}), file=sys.stderr)

    threading.Thread(target=announce, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    server.run()


if __name__ == "__main__":
    main()
