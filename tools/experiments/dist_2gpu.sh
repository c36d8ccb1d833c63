#!/usr/bin/env bash
# Multi-GPU check of the detection workflow (DDP + SyncBN with the TinyViM backbone):
# makes the toy COCO set, trains configs/mask_rcnn_tinyvim_${ARCH}_toy_coco.py from
# scratch with tools/dist_train.sh on GPUS GPUs (SyncBN: every BatchNorm, the backbone's
# included, synchronised across the ranks), checks that SyncBN reached the backbone,
# tests the checkpoint with tools/dist_test.sh and checks the bbox mAP.
#
# 2 GPUs (e.g. 2x H200, a few minutes), from anywhere:
#   bash tools/experiments/dist_2gpu.sh
# CPU smoke run (2 processes over gloo, SyncBN replaced by BN; a few minutes on 2 cores):
#   ARCH=s EPOCHS=1 BATCH=2 WARMUP=2 WORKERS=0 DATA_SIZE=tiny MIN_MAP=0 \
#     bash tools/experiments/dist_2gpu.sh
# Overrides (env): GPUS (2), ARCH (s|b, b), EPOCHS (4), BATCH (images per GPU, 8), WARMUP
# (iterations, 20), WORKERS (4), DATA_SIZE (default|tiny), DATA_DIR
# (data/toy), WORK_DIR, PORT (29517; the test uses PORT+1), MIN_MAP (bbox mAP, 0:
# 4 epochs from scratch check the plumbing, toy_det.sh the learning).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/experiments/common.sh

# Keep NCCL's NVLink multicast (NVLS) off: it is not available on every machine.
export NCCL_NVLS_ENABLE=0
: "${GPUS:=2}" "${ARCH:=b}" "${EPOCHS:=4}" "${BATCH:=8}" "${WARMUP:=20}" "${WORKERS:=4}"
: "${DATA_SIZE:=default}" "${DATA_DIR:=data/toy}" "${PORT:=29517}" "${MIN_MAP:=0}"
: "${WORK_DIR:=work_dirs/dist_${GPUS}gpu_mask_rcnn_tinyvim_${ARCH}_toy}"
CONFIG=configs/mask_rcnn_tinyvim_${ARCH}_toy_coco.py
ROOT=$DATA_DIR/coco/
train_args=(--work-dir "$WORK_DIR")
start=$(date +%s)

python tools/dataset_converters/make_toy_data.py --out "$DATA_DIR" --tasks coco --size "$DATA_SIZE"
mapfile -t data < <(coco_options "$ROOT")
mapfile -t loaders < <(loader_options "$WORKERS")

echo "== train: $CONFIG on $GPUS GPUs, $EPOCHS epochs x $BATCH images per GPU"
rm -f "$WORK_DIR/last_checkpoint"
PORT=$PORT bash tools/dist_train.sh "$CONFIG" "$GPUS" "${train_args[@]}" --cfg-options \
  "${data[@]}" "${loaders[@]}" train_dataloader.batch_size="$BATCH" \
  train_cfg.max_epochs="$EPOCHS" train_cfg.val_begin=$((EPOCHS + 1)) \
  param_scheduler.0.end="$WARMUP" param_scheduler.1.end="$EPOCHS"
train_end=$(date +%s)

LOG=$(ls -t "$WORK_DIR"/*/*.log | head -n 1)
SYNC=$(grep -h 'SyncBatchNorm:' "$LOG" | tail -n 1 || true)
echo "== $SYNC"
# sync_bn=None: CPU processes (tools/train.py drops SyncBN without CUDA)
if [[ $SYNC != *"sync_bn=None"* && ! $SYNC =~ \(([1-9][0-9]*)\ in\ the\ backbone\) ]]; then
  echo "SyncBN did not reach the backbone's BatchNorm layers: $SYNC" >&2
  exit 1
fi

CKPT=$(cat "$WORK_DIR/last_checkpoint")
echo "== test: $CKPT on $GPUS GPUs"
PORT=$((PORT + 1)) bash tools/dist_test.sh "$CONFIG" "$CKPT" "$GPUS" \
  --work-dir "$WORK_DIR/test" --out "$WORK_DIR/test/predictions.pkl" \
  --cfg-options "${data[@]}" "${loaders[@]}"
echo "train $((train_end - start)) s (data included), test $(( $(date +%s) - train_end )) s," \
  "total $(( $(date +%s) - start )) s"
echo "segm mAP = $(metric coco/segm_mAP "$WORK_DIR/test")"
check "TinyViM-${ARCH^^} Mask R-CNN toy COCO bbox mAP ($GPUS GPUs)" \
  "$(metric coco/bbox_mAP "$WORK_DIR/test")" "$MIN_MAP"
