#!/usr/bin/env bash
# Distributed training over torchrun (PyTorch DDP), one process per GPU (or per CPU worker
# with the gloo backend when there is no CUDA).
#
#   tools/dist_train.sh CONFIG NUM_PROCESSES [tools/train.py options...]
#
# Multi-node: run it on every node with NNODES, NODE_RANK, MASTER_ADDR and PORT set alike.
# PYTHON selects the interpreter (default: python).
set -euo pipefail

usage() {  # the comment block above, without the leading '# '
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}
if [[ $# -ge 1 && ( "$1" == "-h" || "$1" == "--help" ) ]]; then
    usage
    exit 0
fi
if [[ $# -lt 2 ]]; then
    usage >&2
    exit 2
fi

CONFIG=$1
NUM_PROCESSES=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PYTHON=${PYTHON:-python}
TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)

PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    --nproc_per_node="$NUM_PROCESSES" \
    "$TOOLS_DIR/train.py" "$CONFIG" --launcher pytorch "${@:3}"
