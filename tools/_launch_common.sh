# Shared by tools/dist_train.sh, dist_test.sh and slurm_train.sh (sourced, not run).
#
#   require_arguments MIN "$@"   -h/--help: the caller's header comment; fewer than MIN: it + exit 2
#   torchrun_tool SCRIPT NUM_PROCESSES ARGS...   exec torchrun on tools/SCRIPT (env NNODES,
#                                                NODE_RANK, MASTER_ADDR, PORT, PYTHON)
TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python}
# The repository on the path, so the tools import mmdynup without an install.
export PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}"

usage() {  # the caller's comment block after the shebang, without the leading '# '
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

require_arguments() {
    local minimum=$1
    shift
    if [[ $# -ge 1 && ( "$1" == "-h" || "$1" == "--help" ) ]]; then
        usage
        exit 0
    fi
    if [[ $# -lt $minimum ]]; then
        usage >&2
        exit 2
    fi
}

torchrun_tool() {
    local script=$1 num_processes=$2
    shift 2
    exec "$PYTHON" -m torch.distributed.run \
        --nnodes="${NNODES:-1}" \
        --node_rank="${NODE_RANK:-0}" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --master_port="${PORT:-29500}" \
        --nproc_per_node="$num_processes" \
        "$TOOLS_DIR/$script" "$@"
}
