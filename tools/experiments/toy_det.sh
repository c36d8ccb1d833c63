#!/usr/bin/env bash
# Does Mask R-CNN + TinyViM learn? Makes the toy COCO-layout set (3 shape classes, 200
# train / 50 val images of ~256x320), trains configs/mask_rcnn_tinyvim_${ARCH}_toy_coco.py
# from scratch, tests the checkpoint with tools/test.py (mmdet's CocoMetric) and checks
# the bbox mAP.
#
# One GPU (target bbox mAP >= 0.5; polygon masks and the host-side settings of the
# configs' fast_training), from anywhere:
#   bash tools/experiments/toy_det.sh
# CPU smoke run (a minute or two):
#   ARCH=s DATA_SIZE=tiny EPOCHS=1 BATCH=2 WARMUP=2 WORKERS=0 MIN_MAP=0 \
#     bash tools/experiments/toy_det.sh
# Overrides (env): ARCH (s|b, b), EPOCHS (16), BATCH (8), WARMUP (iterations, 100),
# LR (1e-3), WORKERS (4), DATA_SIZE (default|tiny), DATA_DIR (data/toy),
# WORK_DIR, MIN_MAP (bbox mAP, 0.5; exit status 1 below it).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/experiments/common.sh

: "${ARCH:=b}" "${EPOCHS:=16}" "${BATCH:=8}" "${WARMUP:=100}" "${LR:=1e-3}" "${WORKERS:=4}"
: "${DATA_SIZE:=default}" "${DATA_DIR:=data/toy}" "${MIN_MAP:=0.5}"
: "${WORK_DIR:=work_dirs/toy_det_${ARCH}}"
CONFIG=configs/mask_rcnn_tinyvim_${ARCH}_toy_coco.py
ROOT=$DATA_DIR/coco/
start=$(date +%s)

python tools/dataset_converters/make_toy_data.py --out "$DATA_DIR" --tasks coco --size "$DATA_SIZE"
mapfile -t data < <(coco_options "$ROOT")
mapfile -t loaders < <(loader_options "$WORKERS")

echo "== train: $CONFIG, $EPOCHS epochs x $BATCH images"
python tools/train.py "$CONFIG" --work-dir "$WORK_DIR" --cfg-options \
  "${data[@]}" "${loaders[@]}" train_dataloader.batch_size="$BATCH" \
  optim_wrapper.optimizer.lr="$LR" train_cfg.max_epochs="$EPOCHS" \
  train_cfg.val_begin=$((EPOCHS + 1)) param_scheduler.0.end="$WARMUP" \
  param_scheduler.1.end="$EPOCHS"

echo "== test"
python tools/test.py "$CONFIG" "$(cat "$WORK_DIR/last_checkpoint")" --work-dir "$WORK_DIR/test" \
  --cfg-options "${data[@]}" "${loaders[@]}"
echo "toy_det.sh: $(( $(date +%s) - start )) s"
echo "segm mAP = $(metric coco/segm_mAP "$WORK_DIR/test")"
check "TinyViM-${ARCH^^} Mask R-CNN toy COCO bbox mAP" \
  "$(metric coco/bbox_mAP "$WORK_DIR/test")" "$MIN_MAP"
