#!/usr/bin/env bash
# GPU session 2 (one GPU): the toy classification run (tools/experiments/toy_cls.sh) in the
# background while the scan / fast-path tests and the whole-model backend check run.
# Usage on the device machine: source .whl/install.sh && bash tools/experiments/gpu_session2.sh
set -u
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
( timeout 420 bash tools/experiments/toy_cls.sh > "$OUT/toy_cls.log" 2>&1; echo "toy_cls rc=$?" >> "$OUT/toy_cls.log" ) &
cls=$!
( echo "== pytest scan + fast paths on GPU"
  timeout 300 python -m pytest tests/test_selective_scan.py tests/test_fast_paths.py -q -rs -x 2>&1 | tail -25
  echo "== whole-model backend check"
  timeout 120 python tools/experiments/gpu_backend_check.py --arch b --shape 2 3 512 512 2>&1 | tail -8
  echo "== scan benchmark cuda"
  timeout 90 python tools/benchmark_scan.py --device cuda 2>&1 | tail -12
) 2>&1 | tee "$OUT/checks.log"
wait $cls
grep -v "^\s*$" "$OUT/toy_cls.log" | grep -E "top-1|Epoch\(val\)|Error|error|rc=|total" | tail -30
