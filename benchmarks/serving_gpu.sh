#!/usr/bin/env bash
# The GPU serving benchmark on a bare GPU machine, in one run (see benchmarks/README.md).
# Installs the wheels of benchmarks/gpu-wheels.txt (carried in .whl/) beside the machine's
# torch unless FastAPI and uvicorn are already importable, then runs benchmarks/serving_gpu.py
# with any arguments given. Results go to benchmarks/results/, and to $OUT when it is set.
# PYTHON picks the interpreter (default python3), WHEELS the wheel folder (default .whl).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=$(mktemp)
if ! "$PYTHON" -c "import fastapi, uvicorn, pydantic" 2>/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/mlcp-serving-site "${WHEELS:-.whl}"/*.whl
    export PYTHONPATH=/tmp/mlcp-serving-site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda:', torch.cuda.is_available())"
PYTHONUNBUFFERED=1 "$PYTHON" benchmarks/serving_gpu.py "$@"
if [ -n "${OUT:-}" ]; then
    find benchmarks/results -name 'serving-*.json' -newer "$stamp" -exec cp {} "$OUT"/ \;
fi
rm -f "$stamp"
