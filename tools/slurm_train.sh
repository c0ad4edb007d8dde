#!/usr/bin/env bash
# Training on a Slurm cluster (as mmseg's tools/slurm_train.sh): srun starts one task per GPU and
# mmengine reads the ranks from Slurm's environment (--launcher slurm).
#
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#       tools/slurm_train.sh PARTITION JOB_NAME CONFIG [tools/train.py options...]
#
# PYTHON selects the interpreter (default: python); PORT sets MASTER_PORT (default 29500).
set -euo pipefail
source "$(dirname "$0")/_launch_common.sh"
require_arguments 3 "$@"

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
GPUS=${GPUS:-4}
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}

# SRUN_ARGS is split into words on purpose (several srun options in one variable).
# shellcheck disable=SC2086
MASTER_PORT=${PORT:-29500} \
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$TOOLS_DIR/train.py" "$CONFIG" --launcher slurm "${@:4}"
