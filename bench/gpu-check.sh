#!/usr/bin/env bash
# The GPU check, one command on a machine with an NVIDIA GPU (about 8 minutes):
#   builds the addon for this GPU, runs the whole test suite (every op on cuda against cpu and the float64
#   references), runs every benchmark (the training step against PyTorch's own, with the losses compared), times
#   the same computations in PyTorch (eager and torch.compile), measures
#   copy bandwidth and bf16 GEMM ceilings, and prints one table. Full results go to $OUT (default bench/results).
# On a machine without a GPU it stops at once with a message.
# AM_RADIO_BENCH_REFERENCE=RADIO_DIR:TIMM_DIR:EINOPS_DIR (NVlabs/RADIO, timm and einops checkouts), when set, gives
# the radio and eradio benches their PyTorch rows (the reference model on the same checkpoint); without it they
# time our side alone, saying so. With it the check takes longer: the reference runs eager and torch.compile per case.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi missing or finds no device); nothing to check" >&2
  exit 2
fi
for tool in node npm nvcc python3; do
  command -v "$tool" >/dev/null || { echo "gpu-check: $tool is not installed" >&2; exit 2; }
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

echo "gpu-check: building for this GPU"
if [ -d node_modules ]; then
  AM_RADIO_CUDA_ARCH=native npx cmake-js rebuild >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
  npm run build:ts >/dev/null
else
  AM_RADIO_CUDA_ARCH=native npm install --no-audit --no-fund >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
fi
node -e "const b=require('./dist').backends().find(b=>b.name==='cuda');console.log('cuda backend:',JSON.stringify(b));if(!b.available)process.exit(1)"

# NCCL, for test/train/nccl.test.ts and the bench's NCCL row: the system's libnccl.so.2, else the one in PyTorch's
# nvidia-nccl wheel when python3 has it; without either those report "skipped: no NCCL".
if [ -z "${AM_RADIO_NCCL_LIBRARY:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libnccl\.so\.2'; then
  nccl=$(python3 -c "import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], 'lib', 'libnccl.so.2'))" 2>/dev/null || true)
  if [ -n "$nccl" ] && [ -f "$nccl" ]; then
    export AM_RADIO_NCCL_LIBRARY=$nccl
    echo "gpu-check: NCCL from $nccl"
  else
    echo "gpu-check: no libnccl.so.2 here; the NCCL tests will report skipped: no NCCL"
  fi
fi

echo "gpu-check: test suite (cpu, sim, cuda)"
set +e
# 20 runs of every exit / worker_threads case: the races they guard against hit one run in ten.
AM_RADIO_RELIABILITY_RUNS=20 npx jest --json --outputFile="$OUT/jest.json" >"$OUT/jest.log" 2>&1
jest_status=$?
set -e
node -e "const r=require('$OUT/jest.json');console.log(r.numPassedTests+' passed, '+r.numFailedTests+' failed, '+r.numPendingTests+' skipped');for(const f of r.testResults)for(const t of f.assertionResults)if(t.status==='failed')console.log('FAILED',t.fullName)"

echo "gpu-check: benchmarks"
# Only the cuda backend: cpu and sim are benchmarked without a GPU, and here they would take most of the 8 minutes.
AM_RADIO_BENCH_DEVICES=cuda AM_RADIO_BENCH_SKIP=train AM_RADIO_BENCH_PYTHON="${AM_RADIO_BENCH_PYTHON:-$(command -v python3)}" \
  AM_RADIO_BENCH_OUT="$OUT" npm run bench >"$OUT/bench.log" 2>&1 || { tail -30 "$OUT/bench.log"; exit 1; }
echo "gpu-check: training step (ViT-B/16, 224 px, batch 64) against PyTorch eager and torch.compile"
# Short: 10 timed steps. f32 is timed against eager only, for the loss agreement of identical f32 steps (~1e-5);
# bf16, how a GPU trains, against eager and torch.compile too (compiling the training graph takes a minute or so).
AM_RADIO_BENCH_DEVICES=cuda AM_RADIO_BENCH_DTYPES=f32,bf16 AM_RADIO_BENCH_TRAIN_COMPILE=bf16 AM_RADIO_BENCH_TRAIN_STEPS=10 \
  AM_RADIO_BENCH_TRAIN_BREAKDOWN=3 AM_RADIO_BENCH_PYTHON="$(command -v python3)" AM_RADIO_BENCH_OUT="$OUT" \
  npm run bench -- train >"$OUT/train.log" 2>&1 || { tail -30 "$OUT/train.log"; exit 1; }
grep -E '^(train: .*(loss ours|WARNING|not measured)|phases )' "$OUT/train.log" || true
python3 bench/torch_reference.py "$OUT" "$OUT/torch.json"
node bench/gpu-report.js "$OUT" | tee "$OUT/report.txt"
exit $jest_status
