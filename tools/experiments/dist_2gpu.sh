#!/usr/bin/env bash
# Multi-GPU check of the detection workflow (DDP + SyncBN with the TinyViM backbone):
# generates the toy COCO set, trains configs/mask_rcnn_tinyvim_${ARCH}_toy_coco.py from
# scratch with tools/dist_train.sh on GPUS GPUs (SyncBN: every BatchNorm, the backbone's
# included, synchronised across the ranks), then evaluates the saved checkpoint with
# tools/dist_test.sh and prints mmdet's COCO bbox / segm metrics.
#
# 2 GPUs (e.g. 2x H200, about 2-3 min), from anywhere:
#   bash tools/experiments/dist_2gpu.sh
# CPU smoke run (2 processes over gloo, SyncBN replaced by BN; ~3 min on 2 cores):
#   ARCH=s EPOCHS=1 BATCH=2 SCALE=160,128 DATA_SIZE=tiny bash tools/experiments/dist_2gpu.sh
# Overrides (env): GPUS (2), ARCH (b), EPOCHS (4), BATCH (images per GPU, 8), SCALE (w,h
# bound of the resize, config default 384,320), WARMUP (iterations, 20), AMP (1|0, 0),
# DATA_SIZE (default|tiny), DATA_DIR (data/toy), WORK_DIR, PORT (29517; the test uses PORT+1).
set -euo pipefail
cd "$(dirname "$0")/../.."

# Keep NCCL's NVLink multicast (NVLS) off: it is not available on every machine.
export NCCL_NVLS_ENABLE=0
: "${GPUS:=2}" "${ARCH:=b}" "${EPOCHS:=4}" "${BATCH:=8}" "${SCALE:=}" "${WARMUP:=20}"
: "${AMP:=0}" "${DATA_SIZE:=default}" "${DATA_DIR:=data/toy}" "${PORT:=29517}"
: "${WORK_DIR:=work_dirs/dist_${GPUS}gpu_mask_rcnn_tinyvim_${ARCH}_toy}"
CONFIG=configs/mask_rcnn_tinyvim_${ARCH}_toy_coco.py
ROOT=$DATA_DIR/coco/

start=$(date +%s)
python tools/dataset_converters/make_toy_data.py --out "$DATA_DIR" --tasks coco --size "$DATA_SIZE"

data=(train_dataloader.dataset.data_root="$ROOT" val_dataloader.dataset.data_root="$ROOT"
  test_dataloader.dataset.data_root="$ROOT"
  val_evaluator.ann_file="${ROOT}annotations/instances_val2017.json"
  test_evaluator.ann_file="${ROOT}annotations/instances_val2017.json")
if [ -n "$SCALE" ]; then  # the Resize steps of the toy config's train / test pipelines
  data+=(train_dataloader.dataset.pipeline.2.scale="($SCALE)"
    test_dataloader.dataset.pipeline.1.scale="($SCALE)")
fi
train_args=(--work-dir "$WORK_DIR")
[ "$AMP" = 1 ] && train_args+=(--amp)

echo "== train: $CONFIG on $GPUS GPUs, $EPOCHS epochs x $BATCH images per GPU"
rm -f "$WORK_DIR/last_checkpoint"
PORT=$PORT bash tools/dist_train.sh "$CONFIG" "$GPUS" "${train_args[@]}" --cfg-options \
  "${data[@]}" train_dataloader.batch_size="$BATCH" train_cfg.max_epochs="$EPOCHS" \
  train_cfg.val_begin=$((EPOCHS + 1)) default_hooks.checkpoint.interval="$EPOCHS" \
  param_scheduler.0.end="$WARMUP" randomness.seed=0
train_end=$(date +%s)

LOG=$(ls -t "$WORK_DIR"/*/*.log | head -n 1)
SYNC=$(grep -h 'SyncBatchNorm:' "$LOG" | tail -n 1 || true)
echo "== $SYNC"
# sync_bn=None: CPU processes (tools/train.py drops SyncBN without CUDA)
if [[ $SYNC != *"sync_bn=None"* && ! $SYNC =~ \(([1-9][0-9]*)\ in\ the\ backbone\) ]]; then
  echo "SyncBN did not reach the backbone's BatchNorm layers: $SYNC" >&2
  exit 1
fi

CKPT=$WORK_DIR/epoch_${EPOCHS}.pth
echo "== test: $CKPT on $GPUS GPUs"
PORT=$((PORT + 1)) bash tools/dist_test.sh "$CONFIG" "$CKPT" "$GPUS" \
  --work-dir "$WORK_DIR/test" --out "$WORK_DIR/test/predictions.pkl" --cfg-options "${data[@]}"

METRICS=$(ls -t "$WORK_DIR"/test/*/*.json | head -n 1)
echo "== COCO metrics ($METRICS):"
python - "$METRICS" <<'EOF'
import json
import sys

metrics = json.load(open(sys.argv[1]))
for key in sorted(k for k in metrics if k.startswith('coco/')):
    print(f'  {key:24s} {metrics[key]:.3f}')
EOF
echo "train $((train_end - start)) s (data included), test $(( $(date +%s) - train_end )) s," \
  "total $(( $(date +%s) - start )) s"
