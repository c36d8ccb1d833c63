#!/usr/bin/env bash
# Does TinyViM-S learn with the toy classification recipe and hard distillation? Makes a
# toy ImageNet-layout set (10 classes of textured shapes), trains the teacher
# (configs/resnet18_toy_imagenet_teacher.py, timm resnet18), then the student
# (configs/tinyvim_s_toy_imagenet_distill.py: configs/tinyvim_s_toy_imagenet.py + the
# teacher's checkpoint), tests the student with tools/test.py and checks its top-1.
#
# One GPU (target top-1 >= 90 %; mixed precision, channels-last and fused AdamW from the
# configs' fast_training), from anywhere:
#   bash tools/experiments/toy_cls.sh
# CPU smoke run (a minute or two):
#   TRAIN_PER_CLASS=4 VAL_PER_CLASS=2 EPOCHS=2 TEACHER_EPOCHS=2 WARMUP=1 BATCH=20 \
#     WORKERS=0 MIN_TOP1=0 bash tools/experiments/toy_cls.sh
# Overrides (env): TRAIN_PER_CLASS (300), VAL_PER_CLASS (20), EPOCHS (40), TEACHER_EPOCHS
# (40), WARMUP (epochs, 3), BATCH (128), LR (2e-3), WORKERS (8), DATA_DIR (data/toy),
# WORK_DIR, MIN_TOP1 (in %, 90; exit status 1 below it).
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/experiments/common.sh

: "${TRAIN_PER_CLASS:=300}" "${VAL_PER_CLASS:=20}" "${EPOCHS:=40}" "${TEACHER_EPOCHS:=40}"
: "${WARMUP:=3}" "${BATCH:=128}" "${LR:=2e-3}" "${WORKERS:=8}"
: "${DATA_DIR:=data/toy}" "${WORK_DIR:=work_dirs/toy_cls}" "${MIN_TOP1:=90}"
ROOT=$DATA_DIR/imagenet_${TRAIN_PER_CLASS}x${VAL_PER_CLASS}
start=$(date +%s)

if [ ! -f "$ROOT/meta/classes.txt" ]; then  # written last
  python -c "import sys; from tinyvim_mm.datasets import make_toy_imagenet as make
print(make(sys.argv[1], train_per_class=int(sys.argv[2]), val_per_class=int(sys.argv[3])))" \
    "$ROOT" "$TRAIN_PER_CLASS" "$VAL_PER_CLASS"
fi
mapfile -t data < <(data_root_options "$ROOT")
mapfile -t loaders < <(loader_options "$WORKERS")
common=("${data[@]}" "${loaders[@]}" train_dataloader.batch_size="$BATCH"
  optim_wrapper.optimizer.lr="$LR" param_scheduler.0.end="$WARMUP"
  param_scheduler.1.begin="$WARMUP")

echo "== teacher: resnet18, $TEACHER_EPOCHS epochs x $BATCH images"
python tools/train.py configs/resnet18_toy_imagenet_teacher.py --work-dir "$WORK_DIR/teacher" \
  --cfg-options "${common[@]}" train_cfg.max_epochs="$TEACHER_EPOCHS" \
  train_cfg.val_interval="$TEACHER_EPOCHS" param_scheduler.1.end="$TEACHER_EPOCHS"
TEACHER=$(cat "$WORK_DIR/teacher/last_checkpoint")

echo "== student: TinyViM-S, hard distillation from $TEACHER, $EPOCHS epochs x $BATCH images"
python tools/train.py configs/tinyvim_s_toy_imagenet_distill.py --work-dir "$WORK_DIR/student" \
  --cfg-options "${common[@]}" model.teacher_checkpoint="$TEACHER" \
  train_cfg.max_epochs="$EPOCHS" train_cfg.val_begin=$((EPOCHS + 1)) \
  param_scheduler.1.end="$EPOCHS"

echo "== test"
python tools/test.py configs/tinyvim_s_toy_imagenet.py "$(cat "$WORK_DIR/student/last_checkpoint")" \
  --work-dir "$WORK_DIR/test" --cfg-options "${data[@]}" "${loaders[@]}"
echo "toy_cls.sh: $(( $(date +%s) - start )) s"
check "TinyViM-S toy ImageNet top-1 (%)" "$(metric accuracy/top1 "$WORK_DIR/test")" "$MIN_TOP1"
