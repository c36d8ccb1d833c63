#!/usr/bin/env bash
# Does Semantic FPN + TinyViM learn? Makes the toy ADE20K-layout set (7 classes, 200
# train / 50 val images), trains configs/fpn_tinyvim_${ARCH}_toy_ade.py from scratch,
# tests the checkpoint with tools/test.py and checks the mIoU.
#
# One GPU (target mIoU >= 70 %), from anywhere:
#   bash tools/experiments/toy_seg.sh
# CPU smoke run (a minute or two):
#   ARCH=s DATA_SIZE=tiny ITERS=2 WARMUP=1 BATCH=2 WORKERS=0 MIN_MIOU=0 \
#     bash tools/experiments/toy_seg.sh
# Overrides (env): ARCH (s|b, b), ITERS (1000), BATCH (16), WARMUP (iterations, 100),
# LR (2e-3), WORKERS (8), DATA_SIZE (default|tiny), DATA_DIR (data/toy), WORK_DIR,
# MIN_MIOU (in %, 70; exit status 1 below it).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/experiments/common.sh

: "${ARCH:=b}" "${ITERS:=1000}" "${BATCH:=16}" "${WARMUP:=100}" "${LR:=2e-3}" "${WORKERS:=8}"
: "${DATA_SIZE:=default}" "${DATA_DIR:=data/toy}" "${MIN_MIOU:=70}"
: "${WORK_DIR:=work_dirs/toy_seg_${ARCH}}"
CONFIG=configs/fpn_tinyvim_${ARCH}_toy_ade.py
start=$(date +%s)

python tools/dataset_converters/make_toy_data.py --out "$DATA_DIR" --tasks ade --size "$DATA_SIZE"
mapfile -t data < <(data_root_options "$DATA_DIR/ade")
mapfile -t loaders < <(loader_options "$WORKERS")

echo "== train: $CONFIG, $ITERS iterations x $BATCH images"
python tools/train.py "$CONFIG" --work-dir "$WORK_DIR" --cfg-options "${data[@]}" \
  "${loaders[@]}" train_dataloader.batch_size="$BATCH" optim_wrapper.optimizer.lr="$LR" \
  train_cfg.max_iters="$ITERS" train_cfg.val_begin=$((ITERS + 1)) \
  param_scheduler.0.end="$WARMUP" param_scheduler.1.begin="$WARMUP" \
  param_scheduler.1.end="$ITERS" default_hooks.logger.interval=$(( ITERS / 20 + 1 ))

echo "== test"
python tools/test.py "$CONFIG" "$(cat "$WORK_DIR/last_checkpoint")" --work-dir "$WORK_DIR/test" \
  --cfg-options "${data[@]}" "${loaders[@]}"
echo "toy_seg.sh: $(( $(date +%s) - start )) s"
check "TinyViM-${ARCH^^} Semantic FPN toy ADE20K mIoU (%)" \
  "$(metric mIoU "$WORK_DIR/test")" "$MIN_MIOU"
