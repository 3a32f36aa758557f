#!/usr/bin/env bash
# Issue 12's open figure, on a lent many-core machine: one worker against its model-only ceiling taken
# in turns (`--ratio-segments 6`, docs/performance.md "In turns"), busy scene, with 2 and 1 ONNX threads,
# interleaved, RUNS times; JSON into $OUT (the device tool brings it back), one summary line a run.
#   here:   devstack/device/fetch-wheels.sh
#   device: run(command="bash devstack/device/bench-many-cores.sh", carry=[".whl"], timeout_s=540)
# Locally (no .whl/): PYTHON=.venv/bin/python FRAMES=600 RUNS=1 OUT=var/bench/many-cores devstack/device/bench-many-cores.sh
# Each run takes about a minute on 16 cores (6,000 frames); RUNS=2 (the default) is 4 runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
OUT=${OUT:-var/bench/many-cores}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  site="$PWD/var/device-site"  # ignored by git, like .whl/
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c "import os, faust, onnxruntime, cv2, spillwatch.cli; print('bench-many-cores:', os.cpu_count(), 'cpus, onnxruntime', onnxruntime.__version__)"
for run in $(seq 1 "${RUNS:-2}"); do
  for threads in 2 1; do
    json="$OUT/busy-onnx${threads}thread-run${run}.json"
    SPILLWATCH_WORKER__INTRA_OP_THREADS=$threads "$PY" -m spillwatch.cli bench pipeline --scene busy --cameras 100 \
      --fps 2 --seconds 3 --workers 1 --throughput-frames "${FRAMES:-6000}" --ratio-segments 6 --out "$json" \
      > "$OUT/busy-onnx${threads}thread-run${run}.log" 2>&1 || { tail -20 "$OUT/busy-onnx${threads}thread-run${run}.log"; exit 1; }
    "$PY" - "$json" "$threads" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
a, b = d.get("alternating") or {}, d.get("ceiling_bracket") or {}
print(f"threads {sys.argv[2]}: in turns {a.get('ratio_one_worker_to_ceiling')}, bracketed long run "
      f"{b.get('ratio_one_worker_to_ceiling')} (steady {b.get('steady')}), {d.get('cpus')} cpus, {d.get('cpu_model')}")
PY
  done
done
