#!/usr/bin/env bash
# GPU session 1: scan backend agreement, whole-model check, scan benchmark, toy det/seg runs.
set -u
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv
mkdir -p $OUT
ngpu=$(python -c "import torch; print(torch.cuda.device_count())")
( CUDA_VISIBLE_DEVICES=0 timeout 480 bash tools/experiments/toy_det.sh > $OUT/toy_det.log 2>&1; echo "toy_det rc=$?" >> $OUT/toy_det.log ) &
det=$!
if [ "$ngpu" -ge 2 ]; then SEGDEV=1; else SEGDEV=0; fi
( CUDA_VISIBLE_DEVICES=$SEGDEV timeout 480 bash tools/experiments/toy_seg.sh > $OUT/toy_seg.log 2>&1; echo "toy_seg rc=$?" >> $OUT/toy_seg.log ) &
seg=$!
sleep 5
( echo "== pytest scan on GPU"; timeout 150 python -m pytest tests/test_selective_scan.py -q -rs 2>&1 | tail -15
  echo "== whole-model backend check"; timeout 90 python tools/experiments/gpu_backend_check.py --arch b --shape 2 3 512 512 2>&1 | tail -8
  echo "== scan benchmark cuda"; timeout 120 python tools/benchmark_scan.py --device cuda 2>&1 | tail -20
) 2>&1 | tee $OUT/checks.log
wait $det $seg
tail -25 $OUT/toy_det.log; tail -25 $OUT/toy_seg.log
