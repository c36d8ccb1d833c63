#!/usr/bin/env bash
# Distributed testing: torchrun (python -m torch.distributed.run) starts GPUS processes
# per node, each runs tools/test.py CONFIG CHECKPOINT --launcher pytorch [ARGS].
#
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]
#   bash tools/dist_test.sh configs/fpn_tinyvim_b_ade20k_40k.py iter_40000.pth 8
#
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500),
# PYTHON (python), DRY_RUN=1 (print the command, run nothing). Without CUDA the
# processes run on CPU over gloo.
set -euo pipefail

usage() {
  echo "usage: [NNODES=1 NODE_RANK=0 MASTER_ADDR=127.0.0.1 PORT=29500]" \
    "bash $0 CONFIG CHECKPOINT GPUS [test.py options]" >&2
  exit 2
}
[ $# -ge 3 ] || usage
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
shift 3
[[ $GPUS =~ ^[1-9][0-9]*$ ]] || { echo "GPUS must be a positive integer, got '$GPUS'" >&2; usage; }
[ -f "$CONFIG" ] || { echo "config file not found: $CONFIG" >&2; usage; }

TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}"
cmd=("${PYTHON:-python}" -m torch.distributed.run
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}"
  --nproc_per_node="$GPUS" --master_port="${PORT:-29500}"
  "$TOOLS/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@")
if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
exec "${cmd[@]}"
