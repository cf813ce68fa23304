#!/usr/bin/env bash
# The GPU measurements still pending, in one device call (about 6–7 minutes on an H200; each compiled
# configuration spends ~75 s compiling). Run from the repository root on the device machine, with the wheels
# in .whl/ carried (diffusers, open_clip, c2pa-python, sqlalchemy, alembic, imagehash, PyWavelets and their
# small dependencies):
#
#     bash bench/gpu_session.sh            # results as JSON under $OUT (or /tmp/aipic-gpu), one log beside them
#
# In order of importance, each step under its own time limit so that one failure costs only itself:
# 1. aipic end to end vs bare diffusers, compiled + TAESD, PNG (the default) and JPEG, with the safety checker
#    (a random-weight CLIP ViT-L/14, as the app runs by default), finishing in worker processes (the default on
#    a GPU machine): the engine issue's targets
# 2. the same, PNG, with finishing in threads only (--cpu-processes 0), for the processes' effect
# 3. the same as 1 with the invisible watermark (on in the app by default; the targets are defined without it)
# Earlier in this script's history, and recorded in bench/results: batched vs single on the GPU
# (bench_batch_identity.py) and the PNG writers on that machine's CPU (bench_encode.py).
set -uo pipefail
out=${OUT:-/tmp/aipic-gpu}
mkdir -p "$out"
log="$out/session.log"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >>"$log" 2>&1 || { echo "wheel install failed" | tee -a "$log"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
nproc >>"$out/device.txt"
common=(--real-architectures --device cuda --size 512 --steps 1 --tiny-decoder --compile --buckets 1 16 --concurrency 32 --per-client 8 --skip-eager)

step() {  # step <seconds> <name> <command...>
    local limit=$1 name=$2
    shift 2
    echo "== $name ($(date -u +%T))" | tee -a "$log"
    timeout "$limit" "$@" 2>&1 | tee -a "$log" | grep -E "^(device|  [a-z_0-9]+ |wrote|Traceback|[A-Za-z]*Error)" || true
    echo "== $name: exit ${PIPESTATUS[0]}" | tee -a "$log"
}

step 250 engine-safety python3 bench/bench_engine.py "${common[@]}" --formats png jpeg --json "$out/engine-safety.json"
step 110 engine-threads python3 bench/bench_engine.py "${common[@]}" --formats png --cpu-processes 0 --json "$out/engine-threads.json"
step 110 engine-watermark python3 bench/bench_engine.py "${common[@]}" --formats png --watermark --json "$out/engine-watermark.json"
