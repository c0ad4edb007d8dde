#!/usr/bin/env bash
# Distributed training over torchrun (PyTorch DDP), one process per GPU (or per CPU worker
# with the gloo backend when there is no CUDA).
#
#   tools/dist_train.sh CONFIG NUM_PROCESSES [tools/train.py options...]
#
# Multi-node: run it on every node with NNODES, NODE_RANK, MASTER_ADDR and PORT set alike.
# PYTHON selects the interpreter (default: python).
set -euo pipefail
source "$(dirname "$0")/_launch_common.sh"
require_arguments 2 "$@"

CONFIG=$1
NUM_PROCESSES=$2
torchrun_tool train.py "$NUM_PROCESSES" "$CONFIG" --launcher pytorch "${@:3}"
