#!/usr/bin/env bash
# GPU figures (issue 18.4) in one short call: ours on Keras/JAX against the official PyTorch code.
#
#   bash scripts/gpu_benchmark.sh prepare     # here, once: what must travel to the GPU machine
#   bash scripts/gpu_benchmark.sh run [ARGS]  # on the GPU machine (JAX + PyTorch, no TensorFlow)
#   bash scripts/gpu_benchmark.sh tiny        # here: the same code paths at tiny sizes, on the CPU
#
# The GPU machines have JAX and PyTorch but no Keras and no internet, and only the working tree plus
# up to 64 MiB of ignored, carried paths travel there. `prepare` therefore writes (under build/,
# which git ignores):
#   build/gpu_wheels/    keras + its two dependencies missing there (namex, optree), ~3 MB, cp312
#   build/gpu_official/  the *.py files of github.com/NVlabs/SPADE (the official code, ~250 kB),
#                        from $SPADE_OFFICIAL_DIR, else a local mirror, else git clone
# and a device call then looks like (the session's `run` tool):
#   run(command="bash scripts/gpu_benchmark.sh run", carry=["build/gpu_wheels", "build/gpu_official"],
#       timeout_s=600)
# It writes $OUT/gpu_bench.json (every row, with the machine) and prints a summary table.
# The generator rows compile once per dtype and batch (XLA, ~20-60 s each on a GPU); --time-budget
# (default 420 s here) skips our remaining rows rather than overrunning the 10-minute call.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
shift || true

case "$mode" in
  prepare)
    py=${PYTHON:-.venv/bin/python}
    mkdir -p build/gpu_wheels
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d build/gpu_wheels "keras==3.15.1" namex optree
    rm -rf build/gpu_official && mkdir -p build/gpu_official
    if [[ -n "${SPADE_OFFICIAL_DIR:-}" ]]; then
      (cd "$SPADE_OFFICIAL_DIR" && find . -name '*.py' -print0 | xargs -0 tar cf -) | tar xf - -C build/gpu_official
    else
      src=${SPADE_OFFICIAL_GIT:-/work/.mirror/NVlabs+SPADE/repo}
      if [[ ! -d "$src" ]]; then
        git clone -q --depth 1 https://github.com/NVlabs/SPADE /tmp/spade_official_clone
        src=/tmp/spade_official_clone/.git
      fi
      # only the *.py blobs (a mirror may lack the large images)
      git --git-dir="$src" ls-tree -r --name-only HEAD | grep '\.py$' \
        | xargs git --git-dir="$src" archive HEAD -- 2>/dev/null | tar xf - -C build/gpu_official
    fi
    du -sh build/gpu_wheels build/gpu_official
    ;;
  run)
    if ls build/gpu_wheels/*.whl >/dev/null 2>&1 && ! python3 -c "import keras" 2>/dev/null; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        build/gpu_wheels/*.whl
      export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
    out=${OUT:-build/gpu_out}
    mkdir -p "$out"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null \
      | tee "$out/nvidia_smi.csv" || true
    official=()
    [[ -f build/gpu_official/models/pix2pix_model.py ]] && official=(--official build/gpu_official)
    python3 scripts/gpu_bench.py "${official[@]}" --time-budget 420 --out "$out/gpu_bench.json" "$@" \
      2> >(tee "$out/gpu_bench.log" >&2)
    ;;
  tiny)
    py=${PYTHON:-.venv/bin/python}
    official=()
    [[ -f build/gpu_official/models/pix2pix_model.py ]] && official=(--official build/gpu_official)
    KERAS_BACKEND=jax JAX_PLATFORMS=cpu "$py" scripts/gpu_bench.py --tiny "${official[@]}" "$@"
    ;;
  *)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac
