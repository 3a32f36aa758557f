#!/usr/bin/env bash
# Issue 12's open figure, on a lent many-core machine: one worker against its model-only ceiling taken
# in turns (`--ratio-segments 6`, docs/performance.md "In turns"), busy scene: 2 threads as lanes (the
# default batch split), 2 threads splitting operators, and 1 thread, interleaved, RUNS times (CASES: threads-split);
# JSON into $OUT (the device tool brings it back), one summary line a run.
#   here:   devstack/device/fetch-wheels.sh
#   device: run(command="bash devstack/device/bench-many-cores.sh", carry=[".whl"], timeout_s=540)
# Locally (no .whl/): PYTHON=.venv/bin/python FRAMES=600 RUNS=1 OUT=var/bench/many-cores devstack/device/bench-many-cores.sh
# Each run takes about a minute on 16 cores (6,000 frames); RUNS=2 (the default) is 6 runs.
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
  for case in ${CASES:-2-batch 2-operators 1-batch}; do
    threads=${case%%-*} split=${case#*-}
    name="busy-onnx${threads}thread-${split}-run${run}"
    SPILLWATCH_WORKER__INTRA_OP_THREADS=$threads SPILLWATCH_WORKER__INFERENCE_SPLIT=$split "$PY" -m spillwatch.cli bench pipeline \
      --scene busy --cameras 100 --fps 2 --seconds 3 --workers 1 --throughput-frames "${FRAMES:-6000}" --ratio-segments 6 \
      --out "$OUT/$name.json" > "$OUT/$name.log" 2>&1 || { tail -20 "$OUT/$name.log"; exit 1; }
    "$PY" - "$OUT/$name.json" "$case" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
a, b = d.get("alternating") or {}, d.get("ceiling_bracket") or {}
w1 = next((t for t in d.get("throughput", []) if t.get("workers") == 1), {})
print(f"{sys.argv[2]}: {w1.get('frames_per_s')} frames/s, in turns {a.get('ratio_one_worker_to_ceiling')}, bracketed long run "
      f"{b.get('ratio_one_worker_to_ceiling')} (steady {b.get('steady')}), {d.get('cpus')} cpus, {d.get('cpu_model')}")
PY
  done
done
