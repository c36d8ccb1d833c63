#!/usr/bin/env bash
# Training on a Slurm cluster: srun starts GPUS tasks (GPUS_PER_NODE per node), each runs
# tools/train.py CONFIG --work-dir WORK_DIR --launcher slurm [ARGS].
#
#   bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]
#   GPUS=16 bash tools/slurm_train.sh gpu tinyvim_det configs/mask_rcnn_tinyvim_b.py work_dirs/det
#
# Environment: GPUS (8), GPUS_PER_NODE (8, at most GPUS), CPUS_PER_TASK (5),
# SRUN_ARGS (extra srun options, e.g. "--quotatype=auto"), PYTHON (python),
# DRY_RUN=1 (print the command, run nothing).
set -euo pipefail

usage() {
  echo "usage: [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=...]" \
    "bash $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py options]" >&2
  exit 2
}
[ $# -ge 4 ] || usage
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
shift 4
GPUS=${GPUS:-8}
[[ $GPUS =~ ^[1-9][0-9]*$ ]] || { echo "GPUS must be a positive integer, got '$GPUS'" >&2; usage; }
[ -f "$CONFIG" ] || { echo "config file not found: $CONFIG" >&2; usage; }
GPUS_PER_NODE=${GPUS_PER_NODE:-$((GPUS < 8 ? GPUS : 8))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
read -r -a srun_args <<< "${SRUN_ARGS:-}"

TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}"
cmd=(srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE"
  --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK"
  --kill-on-bad-exit=1 ${srun_args[@]+"${srun_args[@]}"}
  "${PYTHON:-python}" -u "$TOOLS/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher=slurm "$@")
if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
exec "${cmd[@]}"
