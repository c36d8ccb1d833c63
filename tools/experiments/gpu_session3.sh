#!/usr/bin/env bash
# GPU session 3 (2 GPUs): Mask R-CNN TinyViM-B with tools/dist_train.sh / dist_test.sh on
# both GPUs (tools/experiments/dist_2gpu.sh), the toy classification run on GPU 1 beside it,
# then the whole-model backend check and the GPU tests of the scan and fast paths.
# Usage on the device machine: source .whl/install.sh && bash tools/experiments/gpu_session3.sh
set -u
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv
( CUDA_VISIBLE_DEVICES=1 timeout 540 bash tools/experiments/toy_cls.sh > "$OUT/toy_cls.log" 2>&1
  echo "toy_cls rc=$?" >> "$OUT/toy_cls.log" ) &
cls=$!
timeout 300 bash tools/experiments/dist_2gpu.sh > "$OUT/dist.log" 2>&1; echo "dist_2gpu rc=$?" >> "$OUT/dist.log"
grep -E "^==|coco/|SyncBatchNorm|Epoch\(train\) +\[[0-9]+\]\[[0-9]+/|rc=|total|Error" "$OUT/dist.log" | tail -40
( echo "== whole-model backend check (GPU 0)"
  CUDA_VISIBLE_DEVICES=0 timeout 90 python tools/experiments/gpu_backend_check.py --arch b --shape 2 3 512 512 2>&1 | grep TinyViM
  echo "== GPU tests"
  CUDA_VISIBLE_DEVICES=0 timeout 150 python -m pytest tests/test_selective_scan.py tests/test_fast_paths.py -q -rfs -p no:warnings 2>&1 | grep -vE "^\s*$" | tail -60
) 2>&1 | tee "$OUT/checks.log"
wait $cls
grep -E "top-1|Epoch\(val\)|Error|rc=|total" "$OUT/toy_cls.log" | tail -12
