#!/usr/bin/env bash
# The whole GPU verification of mvlift in one command, sized for one lent H100 (15 minutes of device time,
# start-up included): it stops starting steps once its time budget (default 450 s) is spent.
#
#   bash benchmarks/gpu_all.sh [OUT_DIR]          # default OUT_DIR: outputs/gpu_all/<date-time> (git-ignored)
#
# Steps, in this order, each in its own log OUT_DIR/<step>.log (tables also as OUT_DIR/<step>.md):
#   env             nvidia-smi, torch / triton / CUDA versions
#   build           pip install --no-build-isolation --no-deps -e .   (the native extension, CUDA included)
#   compile_check   benchmarks/compile_kernels.py for sm_90: registers / spills of every kernel as built here
#   pytest_cuda     pytest -m cuda (the CUDA parity tests)
#   gpu_losses, gpu_triangulate, gpu_cross_view_attention, gpu_training   the four tables of benchmarks/
#   profile_stage2  mvlift profile stage2 --batch 64
#   cmu_gpu_run     mvlift run mvlift/configs/cmu_gpu.yaml on the real CMU clips, every loop cut short
# Everything printed also lands in OUT_DIR/all.log, and OUT_DIR/summary.md has one row per step (status,
# seconds). The exit status is 1 when any step failed or timed out.
#
# Environment:
#   MVLIFT_GPU_ALL_TOY=1      CPU smoke run at toy sizes (CI): no build, no CUDA tests, every other step tiny
#   MVLIFT_GPU_ALL_BUDGET     seconds for all steps (default 450 on the GPU, 900 in toy mode)
#   MVLIFT_GPU_ALL_DATA       the CMU asf/amc folder (default data_cache/cmu_mocap/asfamc, see RESULTS.md)
#   MVLIFT_GPU_ALL_RUN_DIR    the CMU run's folder (default runs/gpu_all_<basename of OUT_DIR>, git-ignored)
#   PYTHON                    the interpreter (default python3)
#
# On the lent GPU machine (the device tool: at most 8 files come back from $OUT), with the CMU clips carried
# in data_cache/ (benchmarks/RESULTS.md):
#   bash benchmarks/gpu_all.sh outputs/gpu_all; cp outputs/gpu_all/summary.md $OUT/;
#   tar czf $OUT/gpu_all.tgz -C outputs gpu_all
set -uo pipefail
cd "$(dirname "$0")/.."

TOY=${MVLIFT_GPU_ALL_TOY:-0}
PY=${PYTHON:-python3}
OUT_DIR=${1:-outputs/gpu_all/$(date +%Y%m%d-%H%M%S)}
DATA=${MVLIFT_GPU_ALL_DATA:-data_cache/cmu_mocap/asfamc}
if [[ "$TOY" == 1 ]]; then BUDGET=${MVLIFT_GPU_ALL_BUDGET:-900}; else BUDGET=${MVLIFT_GPU_ALL_BUDGET:-450}; fi
export PYTHONUNBUFFERED=1  # a step stopped by its time limit still leaves its output in the log
mkdir -p "$OUT_DIR" || exit 1
OUT_DIR=$(cd "$OUT_DIR" && pwd)
exec > >(tee -a "$OUT_DIR/all.log") 2>&1
START=$(date +%s)
DEADLINE=$((START + BUDGET))
FAILED=0
SUMMARY="$OUT_DIR/summary.md"
{
  echo "# gpu_all $(date -u +%Y-%m-%dT%H:%MZ) ($([[ $TOY == 1 ]] && echo 'toy sizes on the CPU' || echo GPU))"
  echo
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' + local changes'), budget ${BUDGET} s"
  echo
  echo "| step | status | seconds | limit s |"
  echo "|---|---|---|---|"
} >"$SUMMARY"

# run_step NAME CAP_SECONDS COMMAND...: run under `timeout` (the smaller of CAP and the budget left), log to
# OUT_DIR/NAME.log, add a summary row. A step with under 20 s of budget left is skipped.
run_step() {
  local name=$1 cap=$2
  shift 2
  local left=$((DEADLINE - $(date +%s)))
  if ((left < 20)); then
    echo "=== $name: skipped, ${left} s of the ${BUDGET} s budget left"
    echo "| $name | skipped (budget spent) | | |" >>"$SUMMARY"
    FAILED=1
    return
  fi
  local limit=$((cap < left ? cap : left))
  echo
  echo "=== $name (limit ${limit} s): $*"
  local t0 t1 rc status
  t0=$(date +%s%N)
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT_DIR/$name.log"
  rc=${PIPESTATUS[0]}
  t1=$(date +%s%N)
  case $rc in
    0) status=ok ;;
    124 | 137) status="timed out"; FAILED=1 ;;
    *) status="failed (exit $rc)"; FAILED=1 ;;
  esac
  printf '| %s | %s | %d | %s |\n' "$name" "$status" "$(((t1 - t0) / 1000000000))" "$limit" >>"$SUMMARY"
  echo "=== $name: $status"
}

skip_step() {
  echo "| $1 | skipped ($2) | | |" >>"$SUMMARY"
}

run_step env 30 bash -c "nvidia-smi || true; $PY -c 'import torch, triton; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"triton\", triton.__version__, \"gpu\", torch.cuda.get_device_name() if torch.cuda.is_available() else None)'"

if [[ "$TOY" == 1 ]]; then
  # Toy sizes on the CPU: the plumbing of every step (the kernels themselves are CI's other tests).
  export TRITON_INTERPRET=0
  skip_step build "toy mode"
  skip_step compile_check "toy mode (CI runs tests/test_kernel_compile.py)"
  skip_step pytest_cuda "toy mode"
  run_step gpu_losses 120 "$PY" benchmarks/gpu_losses.py --device cpu --frames 8 --joints 5 --views 3 \
    --batches 2 --markdown "$OUT_DIR/gpu_losses.md"
  run_step gpu_triangulate 120 "$PY" benchmarks/gpu_triangulate.py --device cpu --sequences 2 --frames 4 \
    --joints 5 --adam-steps 5 --fp64 --markdown "$OUT_DIR/gpu_triangulate.md"
  run_step gpu_cross_view_attention 120 "$PY" benchmarks/gpu_cross_view_attention.py --device cpu --n 33 \
    --views 4 --heads 2 --dim 16 --dtypes fp32 --out "$OUT_DIR/gpu_cross_view_attention.md"
  run_step gpu_training 120 "$PY" benchmarks/gpu_training.py --device cpu --batch 2 --frames 8 --joints 5 \
    --d-model 16 --layers 1 --heads 2 --ffn 16 --iters 1 --warmup 1 --out "$OUT_DIR/gpu_training.md"
  run_step profile_stage2 120 "$PY" -m mvlift.cli profile stage2 --batch 2 --frames 8 --joints 5 \
    --d-model 16 --layers 1 --heads 2 --iters 1 --device cpu
  RUN_CAP=300
  RUN_SETTINGS=(device=cpu stage1.max_steps=2 stage4.max_steps=2 stage2.steps=2 stage3.fit_steps=2
    lift.steps=2 stage1.batch_size=4 stage4.batch_size=4 baselines=false stage1.progress=false
    stage4.progress=false stage2.progress=false lift.progress=false)
else
  export MVLIFT_CMU_DIR=${MVLIFT_CMU_DIR:-$(dirname "$DATA")}
  run_step build 150 "$PY" -m pip install --no-build-isolation --no-deps -e .
  run_step compile_check 60 "$PY" benchmarks/compile_kernels.py --arch 90 --jobs 8 \
    --json "$OUT_DIR/compile_check.json"
  run_step pytest_cuda 120 "$PY" -m pytest -m cuda -q -p no:cacheprovider tests
  run_step gpu_losses 60 "$PY" benchmarks/gpu_losses.py --batches 64 1024 --joints 18 \
    --markdown "$OUT_DIR/gpu_losses.md"
  run_step gpu_triangulate 30 "$PY" benchmarks/gpu_triangulate.py --adam-steps 100 --fp64 \
    --markdown "$OUT_DIR/gpu_triangulate.md"
  run_step gpu_cross_view_attention 40 "$PY" benchmarks/gpu_cross_view_attention.py --views 4 6 8 \
    --out "$OUT_DIR/gpu_cross_view_attention.md"
  run_step gpu_training 60 "$PY" benchmarks/gpu_training.py --joints 18 --iters 10 --warmup 3 \
    --out "$OUT_DIR/gpu_training.md"
  run_step profile_stage2 45 "$PY" -m mvlift.cli profile stage2 --batch 64 --iters 10
  RUN_CAP=150
  RUN_SETTINGS=(stage1.max_steps=300 stage4.max_steps=300 stage2.steps=100 stage3.fit_steps=50 lift.steps=10
    baselines=false stage1.progress=false stage4.progress=false stage2.progress=false lift.progress=false)
fi

if [[ -d "$DATA" ]]; then
  # The run folder (checkpoints: tens of MB) goes to the git-ignored runs/; its metrics join the logs.
  RUN_DIR=${MVLIFT_GPU_ALL_RUN_DIR:-"runs/gpu_all_$(basename "$OUT_DIR")"}
  SETS=(--set "data.source=$DATA")
  for s in "${RUN_SETTINGS[@]}"; do SETS+=(--set "$s"); done
  run_step cmu_gpu_run "$RUN_CAP" "$PY" -m mvlift.cli run mvlift/configs/cmu_gpu.yaml --out "$RUN_DIR" "${SETS[@]}"
  cp "$RUN_DIR/metrics.md" "$OUT_DIR/cmu_gpu_metrics.md" 2>/dev/null
  cp "$RUN_DIR/metrics.json" "$OUT_DIR/cmu_gpu_metrics.json" 2>/dev/null
else
  echo "=== cmu_gpu_run: no CMU clips at $DATA (set MVLIFT_GPU_ALL_DATA)"
  echo "| cmu_gpu_run | failed (no clips at $DATA) | | |" >>"$SUMMARY"
  FAILED=1
fi

{
  echo
  echo "total $(($(date +%s) - START)) s; $([[ $FAILED == 0 ]] && echo 'every step ok' || echo 'SOME STEPS FAILED')"
} >>"$SUMMARY"
echo
cat "$SUMMARY"
exit "$FAILED"
