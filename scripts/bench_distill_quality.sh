#!/usr/bin/env bash
# What distillation buys at a CPU-trainable size (issue 17): facades at 64x64, a teacher from
# `spade train`, a SPADE-Lite student from `spade distill`, and the same student architecture trained
# from scratch (the control) for the same number of steps; all three scored on a held-out split with
# `spade evaluate` (FD/KID on AlexNet features, built-in segmenter mIoU). Prints the three JSON results.
#
#   DATA=path/to/facades/train OUT=/tmp/q STEPS=100 SPADE_ALEXNET_WEIGHTS=.../lpips_alex_v0.1.npz \
#       nice -n 5 scripts/bench_distill_quality.sh
#
# Environment: DATA (facades train folder: images/ + labels/), OUT (work folder), STEPS (per training,
# default 100), TEACHER_STEPS (default STEPS), WIDTH (default 0.5), SEPARABLE (1 = --separable, default
# 1), NGF (teacher ngf/ndf, default 32), VAL (held-out fraction, default 0.15), SEG_STEPS (built-in
# segmenter steps, default 1000). The AlexNet/LPIPS weights come from $SPADE_ALEXNET_WEIGHTS (or the
# weights cache); nothing is downloaded when that is set.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DATA:?set DATA to the facades train folder}" "${OUT:?set OUT to a work folder}"
STEPS=${STEPS:-100}; TEACHER_STEPS=${TEACHER_STEPS:-$STEPS}; WIDTH=${WIDTH:-0.5}; SEPARABLE=${SEPARABLE:-1}
NGF=${NGF:-32}; VAL=${VAL:-0.15}; SEG_STEPS=${SEG_STEPS:-1000}
PY=${PY:-.venv/bin/python}; SPADE=${SPADE:-.venv/bin/spade}
SEP=(); SEPSET=false; if [ "$SEPARABLE" = 1 ]; then SEP=(--separable); SEPSET=true; fi

"$PY" -c "import sys; from spade_tf.config import get_preset; from spade_tf.benchmarks.quality import make_split; \
r, i = make_split(get_preset('facades'), sys.argv[1], sys.argv[2], float(sys.argv[3]), 0); \
print(r, i['n_train'], 'train /', i['n_val'], 'val', file=sys.stderr)" "$DATA" "$OUT" "$VAL"
D="$OUT/split"
COMMON=(--preset facades --data "$D" --log-every 20 --sample-every 1000 --verbose 2
        --set crop_size=64 --set load_size=72 --set perceptual_backbone=alexnet
        --set ngf="$NGF" --set ndf="$NGF" --set batchSize=4)
EVAL=(--preset facades --data "$D" --split val --features alexnet --segmenter builtin
      --segmenter-steps "$SEG_STEPS")

timed() { local name=$1; shift; local t0; t0=$(date +%s); "$@"; echo "$name wall_s $(( $(date +%s) - t0 ))" >&2; }

timed teacher "$SPADE" train "${COMMON[@]}" --out "$OUT/teacher" --steps "$TEACHER_STEPS"
timed student "$SPADE" distill --teacher "$OUT/teacher" --data "$D" --out "$OUT/student" --width "$WIDTH" \
    "${SEP[@]}" --steps "$STEPS" --log-every 20 --sample-every 1000 --verbose 2
timed control "$SPADE" train "${COMMON[@]}" --out "$OUT/control" --steps "$STEPS" \
    --set netG=spade_lite --set width="$WIDTH" --set separable="$SEPSET"
for m in teacher student control; do
  "$SPADE" evaluate --model "$OUT/$m" "${EVAL[@]}" > "$OUT/$m/eval.json"
  echo "$m $(cat "$OUT/$m/eval.json")"
done
