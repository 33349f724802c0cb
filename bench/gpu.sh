#!/usr/bin/env bash
# Every GPU timing of the training module in one go (issue 5 item 7; not a test, never run by CI), for a GPU
# host with a Vulkan driver (WebGPU through the `webgpu` package = Dawn) and, for the reference figures,
# PyTorch with CUDA. Run from the repository root after `npm ci`:
#
#   bash bench/gpu.sh [LOG]          (default LOG: gpu-bench.log; every step's output goes there too)
#
# Steps, each under its own time limit so that one slow or failing step does not cost the others:
#   1. the adapter Dawn finds (vendor, architecture, description) and nvidia-smi;
#   2. bench/train.ts: CBR-Small 128², batch 16, tfjs-webgpu vs PyTorch CUDA on the same GPU (same model,
#      parameter counts checked equal), and again at the paper's 224², batch 32;
#   3. bench/train-epoch.ts: one epoch (the 2nd of 2; the 1st compiles the shaders) of the real training path
#      (data loading, rotation, oversampling, batches, SGD, checkpoint) for paper cells: CBR/cbr_small,
#      D0/vgg16, D0/mobilenet (α 0.25), D1/densenet121, D0/xception, on `phantom:22` (≈ 1,200 samples per
#      epoch; an epoch of all 100 ACDC subjects with OAP/OBS × 6 has 2,372, a 5-fold CV fold ≈ 1,500).
#      ImageNet cells run with random base weights (--weights none): a step's time does not depend on them;
#   4. `sax-range train` of the ci protocol on phantom data with --backend webgpu, end to end (CV, final model).
# Environment: SAX_GPU_DATASET (phantom:22), SAX_GPU_STEP_LIMIT (seconds per epoch step, 70), SAX_PYTHON (python3).
set -uo pipefail
log=${1:-gpu-bench.log}
dataset=${SAX_GPU_DATASET:-phantom:22}
limit=${SAX_GPU_STEP_LIMIT:-70}
py=${SAX_PYTHON:-python3}
: >"$log"
step() { # step NAME LIMIT COMMAND...
  local name=$1 lim=$2
  shift 2
  echo "=== $name ($(date -u +%H:%M:%S), limit ${lim}s): $*" | tee -a "$log"
  local t0=$SECONDS
  timeout -k 5 "$lim" "$@" 2>&1 | tee -a "$log"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s" | tee -a "$log"
}
tsx=(node --import tsx)

step adapter 20 bash -c "nvidia-smi -L; node -e \"
const { create, globals } = require('webgpu');
Object.assign(globalThis, globals);
const gpu = create([]);
gpu.requestAdapter().then((a) => { const i = a?.info ?? {}; console.log('webgpu adapter:', a ? [i.vendor, i.architecture, i.device, i.description].join(' | ') : 'none', a ? 'maxStorageBufferBindingSize ' + a.limits.maxStorageBufferBindingSize + ', maxBufferSize ' + a.limits.maxBufferSize : ''); process.exit(0); });
\""
step train-128 50 "${tsx[@]}" bench/train.ts --backend webgpu --torch-device cuda --python "$py" --arch cbr_small --input 128 --batch 16 --steps 30 --warmup 5
step train-224 50 "${tsx[@]}" bench/train.ts --backend webgpu --torch-device cuda --python "$py" --arch cbr_small --input 224 --batch 32 --steps 20 --warmup 5
for cell in CBR/cbr_small/lr0.01 D0/vgg16/lr0.01 D0/mobilenet/lr0.01 D1/densenet121/lr0.001 D0/xception/lr0.01; do
  step "epoch $cell" "$limit" "${tsx[@]}" bench/train-epoch.ts --backend webgpu --protocol config/protocols/paper.json --cell "$cell" \
    --dataset "$dataset" --epochs 2 --weights none
done
out=$(mktemp -d)
step train-ci 60 node bin/sax-range.js train --protocol config/protocols/ci.json --dataset phantom:6:1 --backend webgpu --out "$out/run"
ls -R "$out/run" | head -40 >>"$log"
echo "=== done" | tee -a "$log"
