#!/usr/bin/env bash
# Distributed evaluation over torchrun (PyTorch DDP), one process per GPU (or per CPU worker
# with the gloo backend when there is no CUDA).
#
#   tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [tools/test.py options...]
#
# Multi-node: run it on every node with NNODES, NODE_RANK, MASTER_ADDR and PORT set alike.
# PYTHON selects the interpreter (default: python).
set -euo pipefail
source "$(dirname "$0")/_launch_common.sh"
require_arguments 3 "$@"

CONFIG=$1
CHECKPOINT=$2
NUM_PROCESSES=$3
torchrun_tool test.py "$NUM_PROCESSES" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
