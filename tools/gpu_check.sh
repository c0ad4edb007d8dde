#!/usr/bin/env bash
# GPU check in two steps: `prepare` here (registry access), `run` on the CUDA machine.
#
#   SAPA_REPO=/path/to/tiny-smart/sapa bash tools/gpu_check.sh prepare
#       build/authors: mmcv 2.1.0's sdist (pip download) and tiny-smart/sapa (a checkout, or its
#       bare git directory); build/gpu_pythonpath: the pure-Python packages the check imports.
#   bash tools/gpu_check.sh run [gpu_check.py options]
#       on the GPU machine (torch, Triton, nvcc there): Triton tests, the authors' CUDA ops
#       compiled from build/authors, then the tables; writes $OUT/gpu_check.md (or
#       build/gpu_check.md) and $OUT/gpu_check.log. Both folders must travel with the working
#       tree (they are ignored by git), e.g. the device tool's
#       carry=["build/authors", "build/gpu_pythonpath"], command "bash tools/gpu_check.sh run".
#       Expected: about 2 min of builds, 1 min of tests, 1-2 min of tables; `run --sweep`
#       adds the tile-constant sweep (about 1-2 min).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
case "${1:-}" in
  prepare)
    [ -x .venv/bin/python ] && PYTHON=.venv/bin/python
    [ -n "${SAPA_REPO:-}" ] || {
      echo "SAPA_REPO is unset: set it to a checkout (or bare git dir) of tiny-smart/sapa" >&2
      exit 2
    }
    "$PYTHON" tools/authors_cuda_ops.py prepare build/authors --sapa-repo "$SAPA_REPO" \
      ${MMCV_SDIST:+--mmcv-sdist "$MMCV_SDIST"}
    "$PYTHON" tools/gpu_check.py --bundle build/gpu_pythonpath
    du -sh build/authors build/gpu_pythonpath
    ;;
  run)
    shift
    out=${OUT:-build}
    mkdir -p "$out"
    export PYTHONUNBUFFERED=1
    "$PYTHON" tools/gpu_check.py --authors build/authors --output "$out/gpu_check.md" "$@" \
      2>&1 | tee "$out/gpu_check.log"
    ;;
  *)
    echo "usage: SAPA_REPO=DIR bash tools/gpu_check.sh prepare" >&2
    echo "       bash tools/gpu_check.sh run [tools/gpu_check.py options]" >&2
    exit 2
    ;;
esac
