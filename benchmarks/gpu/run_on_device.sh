#!/usr/bin/env bash
# On the GPU machine, from the repository root: install the carried wheels into /tmp/site,
# then run the benchmark; gpu.json and log.txt land in $OUT (or benchmarks/gpu/out).
set -euo pipefail
here=benchmarks/gpu
out=${OUT:-$here/out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
    --format=csv | tee "$out/nvidia-smi.txt" || true
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$here"/wheels/*.whl
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 KERAS_BACKEND=jax
python3 "$here/run_gpu_bench.py" --out "$out" "$@" 2>&1 | tee "$out/log.txt"
