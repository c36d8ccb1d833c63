#!/usr/bin/env bash
# THE main-job command (README):   bash tools/quickstart.sh [tools/quickstart.py options]
#
# 1. tools/install.sh: installs what is missing (a few seconds when all is there);
# 2. tools/quickstart.py: generates the toy ImageNet / COCO / ADE20K sets, trains
#    TinyViM-S classification, Mask R-CNN TinyViM-S and Semantic FPN TinyViM-S for a
#    short schedule each on CPU, tests them with the toolboxes' metrics (top-1, COCO
#    bbox/segm mAP, mIoU), draws one prediction picture per task and the feature spectra
#    of the classifier, and prints a summary table. About 5 minutes on 2 CPU cores (installed).
#
# Outputs: work_dirs/quickstart/{cls,det,seg}/ (work dirs: logs, checkpoint, console.log),
#   summary.md, summary.json, demo_{cls,det,seg}.png, spectrum_cls.png (+ .json).
# Options (passed on to tools/quickstart.py, see --help): --smoke, --tasks cls det seg,
#   --work-dir DIR, --data-root DIR, --jobs N, --threads N.
# Environment: QUICKSTART_SMOKE=1 (= --smoke: tiny data, 2 iterations each, < 2 min),
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
