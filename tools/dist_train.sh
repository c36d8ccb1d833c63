#!/usr/bin/env bash
# Distributed training: torchrun (python -m torch.distributed.run) starts GPUS processes
# per node, each runs tools/train.py CONFIG --launcher pytorch [ARGS].
#
#   bash tools/dist_train.sh CONFIG GPUS [train.py options]
#   bash tools/dist_train.sh configs/mask_rcnn_tinyvim_b.py 8 --amp
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash tools/dist_train.sh CONFIG 8   # node 0
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 bash tools/dist_train.sh CONFIG 8   # node 1
#
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500),
# PYTHON (python), DRY_RUN=1 (print the command, run nothing). Without CUDA the
# processes train on CPU over gloo (a smoke test of the multi-process path).
set -euo pipefail

usage() {
  echo "usage: [NNODES=1 NODE_RANK=0 MASTER_ADDR=127.0.0.1 PORT=29500]" \
    "bash $0 CONFIG GPUS [train.py options]" >&2
  exit 2
}
[ $# -ge 2 ] || usage
CONFIG=$1
GPUS=$2
shift 2
[[ $GPUS =~ ^[1-9][0-9]*$ ]] || { echo "GPUS must be a positive integer, got '$GPUS'" >&2; usage; }
[ -f "$CONFIG" ] || { echo "config file not found: $CONFIG" >&2; usage; }

TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}"
cmd=("${PYTHON:-python}" -m torch.distributed.run
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}"
  --nproc_per_node="$GPUS" --master_port="${PORT:-29500}"
  "$TOOLS/train.py" "$CONFIG" --launcher pytorch "$@")
if [ "${DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
exec "${cmd[@]}"
