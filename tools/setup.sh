#!/usr/bin/env bash
# Idempotent set-up of mmdynup's environment in .venv at the repository root.
#
#   bash tools/setup.sh            # create / complete .venv (a second run takes well under 2 min)
#
# Exact versions come from requirements/lock.txt (pip -c; pyproject.toml states the supported
# ranges). mmcv's compiled ops are
# built once from the PyPI sdist and the wheel is cached outside the repository in
# $MMDYNUP_WHEEL_CACHE (default ~/.cache/mmdynup/wheels), keyed by mmcv, torch and Python versions.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
PYTHON_BIN="${PYTHON:-python3}"
WHEEL_CACHE="${MMDYNUP_WHEEL_CACHE:-$HOME/.cache/mmdynup/wheels}"
MIN_FREE_GB="${MMDYNUP_MIN_FREE_GB:-6}"
STAMP="$VENV/.mmdynup-setup-stamp"
started=$(date +%s)

say() { printf '[setup %4ss] %s\n' "$(( $(date +%s) - started ))" "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- preconditions --------------------------------------------------------------------------
command -v "$PYTHON_BIN" >/dev/null || die "$PYTHON_BIN not found; install Python >= 3.10 or set PYTHON=/path/to/python3"
"$PYTHON_BIN" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "Python >= 3.10 is required, found $("$PYTHON_BIN" -V 2>&1); set PYTHON=/path/to/python3.10+"
free_gb=$(df -Pk "$REPO_ROOT" | awk 'NR==2 {print int($4 / 1048576)}')
[ "$free_gb" -ge "$MIN_FREE_GB" ] \
  || die "only ${free_gb} GB free on the disk holding $REPO_ROOT; need ${MIN_FREE_GB} GB (venv + mmcv build)"

# Exact versions: requirements/lock.txt, installed as pip constraints everywhere below.
LOCK="$REPO_ROOT/requirements/lock.txt"
[ -f "$LOCK" ] || die "$LOCK is missing (the exact versions CI installs)"
read_pin() {  # read_pin <package> -> its version in requirements/lock.txt
  local line
  line=$(grep -i -E "^$1==" "$LOCK" | head -n1)
  [ -n "$line" ] || die "$1 is not pinned with == in $LOCK"
  echo "${line#*==}"
}
read_build_requires() {
  "$PYTHON_BIN" - "$REPO_ROOT/pyproject.toml" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
block = re.search(r'\[tool\.mmdynup\.build\]\s*(?:#[^\n]*\n)*\s*requires\s*=\s*\[([^\]]*)\]', text)
print(' '.join(re.findall(r'"([^"]+)"', block.group(1))))
EOF
}
TORCH_VERSION=$(read_pin torch)
MMCV_VERSION=$(read_pin mmcv)
SETUPTOOLS_VERSION=$(read_pin setuptools)
BUILD_REQUIRES="setuptools==$SETUPTOOLS_VERSION $(read_build_requires)"

# The local CPU wheel of torch, where the machine has one, so pip never resolves a CUDA build.
PIP_ARGS=(--disable-pip-version-check --constraint "$LOCK")
for links in /opt/wheels ${MMDYNUP_FIND_LINKS:-}; do
  [ -d "$links" ] && PIP_ARGS+=(--find-links "$links")
done

# mmdynup's C++ CPU kernels (mmdynup/ops/csrc): compiled once into ~/.cache/mmdynup/extensions,
# so that no test or training run waits for the compiler. A failed build is not fatal: the ops
# then run their PyTorch fast paths (the reason is printed here and logged at first use).
build_native_kernels() {
  local output
  if output=$("$VENV/bin/python" -m mmdynup.ops.native 2>&1); then
    say "$(printf '%s\n' "$output" | tail -n 1)"
  else
    printf '%s\n' "$output" | tail -n 20 >&2
    say "the C++ CPU kernels did not build (the ops run their PyTorch fast paths instead)"
  fi
}

# --- fast path: nothing changed since the last complete run -----------------------------------
fingerprint=$(cat "$REPO_ROOT/pyproject.toml" "$LOCK" "$0" | sha256sum | cut -c1-16)
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$fingerprint" ] \
   && "$VENV/bin/python" -c 'import mmdynup, mmcv.ops, mmseg, mmdet' 2>/dev/null; then
  say "environment is up to date ($VENV)"
  build_native_kernels
  exit 0
fi

# --- virtual environment ---------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $("$PYTHON_BIN" -V 2>&1)"
  "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_run() { local command=$1; shift; "$PY" -m pip "$command" "${PIP_ARGS[@]}" "$@"; }
say "installing build tools: pip, $BUILD_REQUIRES"
pip_run install -q --upgrade pip
# shellcheck disable=SC2086
pip_run install -q $BUILD_REQUIRES

say "installing torch==$TORCH_VERSION (CPU wheel)"
pip_run install -q "torch==$TORCH_VERSION"
"$PY" -c "import torch; assert torch.__version__.split('+')[0] == '$TORCH_VERSION', torch.__version__" \
  || die "torch $TORCH_VERSION did not install; found $("$PY" -c 'import torch; print(torch.__version__)' 2>&1)"

say "installing mmengine and numpy (needed to build mmcv)"
pip_run install -q "mmengine==$(read_pin mmengine)" "numpy==$(read_pin numpy)" \
  "opencv-python==$(read_pin opencv-python)"

# --- mmcv with compiled ops, built once and cached ---------------------------------------------
py_tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
# CUDA ops where torch is a CUDA build, a GPU is visible and nvcc exists; CPU ops otherwise.
torch_cuda=$("$PY" -c 'import torch; print(torch.version.cuda if torch.version.cuda and torch.cuda.is_available() else "")')
if [ -n "$torch_cuda" ] && command -v nvcc >/dev/null; then
  FORCE_CUDA=1; ops_tag="-cu${torch_cuda//./}"
  say "CUDA $torch_cuda with a GPU and nvcc: mmcv gets CUDA ops"
else
  FORCE_CUDA=0; ops_tag=""
  [ -n "$torch_cuda" ] && say "torch has CUDA $torch_cuda but nvcc is not on PATH: mmcv gets CPU ops only"
fi
cache_dir="$WHEEL_CACHE/mmcv-$MMCV_VERSION-torch-$TORCH_VERSION-$py_tag$ops_tag"
mkdir -p "$cache_dir"
if "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
  say "mmcv $MMCV_VERSION with ops already installed"
else
  wheel=$(ls "$cache_dir"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    build_dir="$cache_dir/build"
    log="$cache_dir/build.log"
    rm -rf "$build_dir" && mkdir -p "$build_dir"
    jobs=$(nproc 2>/dev/null || echo 2)
    say "building mmcv $MMCV_VERSION with ops from the PyPI sdist (MAX_JOBS=$jobs; ~10-45 min on 2 cores); log: $log"
    build_start=$(date +%s)
    if ! (
      set -e
      cd "$build_dir"
      pip_run download -q --no-deps --no-binary :all: --no-build-isolation \
        "mmcv==$MMCV_VERSION" -d .
      MMCV_WITH_OPS=1 FORCE_CUDA=$FORCE_CUDA MAX_JOBS="$jobs" \
        pip_run wheel --no-build-isolation --no-deps -v ./mmcv-"$MMCV_VERSION".tar.gz -w "$build_dir/dist"
    ) >"$log" 2>&1; then
      echo "----- last 40 lines of $log -----" >&2
      tail -n 40 "$log" >&2
      die "the mmcv $MMCV_VERSION build failed (full log: $log). Needs gcc/g++ and the Python headers."
    fi
    built=$(ls "$build_dir"/dist/mmcv-"$MMCV_VERSION"-*.whl | head -n1)
    mv "$built" "$cache_dir/"
    rm -rf "$build_dir"
    wheel="$cache_dir/$(basename "$built")"
    say "mmcv built in $(( $(date +%s) - build_start )) s; cached at $wheel"
  else
    say "reusing cached mmcv wheel $wheel"
  fi
  pip_run install -q --no-deps "$wheel"
fi

# --- the rest, at the versions of requirements/lock.txt ---------------------------------------------------------
say "installing mmsegmentation, mmdet, mmdynup (-e .[test]) and their pinned dependencies"
pip_run install -q -e "$REPO_ROOT[test]"
"$PY" -c 'import mmdynup, mmcv.ops, mmseg, mmdet' \
  || die "the environment does not import (mmdynup, mmcv.ops, mmseg, mmdet); see the errors above"
build_native_kernels
echo "$fingerprint" > "$STAMP"
say "done: $VENV ($("$PY" -c 'import torch, mmcv, mmseg, mmdet; print(f"torch {torch.__version__}, mmcv {mmcv.__version__}, mmseg {mmseg.__version__}, mmdet {mmdet.__version__}")'))"
