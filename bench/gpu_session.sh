#!/usr/bin/env bash
# The GPU measurements still pending, in one device call (about 8 minutes on an H200; each compiled
# configuration spends ~75-100 s compiling). Run from the repository root on the device machine, with the
# wheels in .whl/ carried (diffusers, open_clip, c2pa-python and their small dependencies):
#
#     bash bench/gpu_session.sh            # results as JSON under $OUT (or /tmp/aipic-gpu)
#
# 1. batched vs single: bit-identical on the GPU or not, and by how much (README, Engine)
# 2. aipic end to end vs bare diffusers, compiled + TAESD, PNG (run-length zlib) and JPEG, with the safety
#    checker (a random-weight CLIP ViT-L/14, as the app runs by default)
# 3. the same without the safety checker, and with the invisible watermark, for the stage costs
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1
out=${OUT:-/tmp/aipic-gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/device.txt"
common=(--real-architectures --device cuda --size 512 --steps 1 --tiny-decoder --compile --buckets 1 16)
python3 bench/bench_batch_identity.py --real-architectures --device cuda --json "$out/batch-identity.json"
python3 bench/bench_engine.py "${common[@]}" --formats png jpeg --json "$out/engine-safety.json"
python3 bench/bench_engine.py "${common[@]}" --formats png --no-safety --skip-eager --json "$out/engine-no-safety.json"
python3 bench/bench_engine.py "${common[@]}" --formats png --watermark --skip-eager --json "$out/engine-watermark.json"
