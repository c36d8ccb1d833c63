#!/usr/bin/env bash
# THE main-job command (README):   bash tools/quickstart.sh [tools/quickstart.py options]
#
# 1. tools/install.sh: installs what is missing (a few seconds when all is there);
# 2. tools/quickstart.py: generates the toy ImageNet / COCO / ADE20K sets, then per task
#    runs tools/train.py on the shipped toy config (configs/tinyvim_s_toy_imagenet.py,
#    mask_rcnn_tinyvim_s_toy_coco.py, fpn_tinyvim_s_toy_ade.py) with a short CPU schedule
#    (--cfg-options: schedule, batch, loaders, logging, paths only), tools/test.py on its
#    checkpoint (top-1, COCO bbox/segm mAP, mIoU), draws one prediction picture per task
#    and the feature spectra of the classifier, and prints a summary table. About 5
#    minutes on 2 idle CPU cores (installed).
#
# Outputs: work_dirs/quickstart/{cls,det,seg}/ (work dirs: dumped config, logs,
#   checkpoint, test/ metrics, console.log), summary.md, summary.json,
#   demo_{cls,det,seg}.png, spectrum_cls.png (+ .json). The checkpoints fit the toy
#   configs as they are: tools/test.py and tools/demo.py (README) take them.
# Options (passed on to tools/quickstart.py, see --help): --smoke, --tasks cls det seg,
#   --work-dir DIR, --data-root DIR, --jobs N, --threads N.
# Environment: QUICKSTART_SMOKE=1 (= --smoke: tiny data, a few iterations each, < 2 min),
#   TINYVIM_SKIP_INSTALL=1 and the other variables of tools/install.sh, PYTHON=python3.11.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
START="$(date +%s)"
cd "$ROOT"

RULE="$(printf '=%.0s' {1..78})"
printf '\n%s\n[quickstart] install check (tools/install.sh)\n%s\n' "$RULE" "$RULE"
bash tools/install.sh

export PYTHONUNBUFFERED=1
exec "$PYTHON" tools/quickstart.py --start-time "$START" "$@"
