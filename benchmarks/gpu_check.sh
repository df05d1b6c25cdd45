#!/usr/bin/env bash
# One prepared run on a machine with one CUDA GPU (H100/H200 class), in at most 8 minutes: the CUDA
# tests, the paper setting and realnet at 10^5 cells against decoupler, the 10^6-cell fit to |PCC|
# 0.98 and its inference, and the distributed fit under nccl. Every step has its own time limit
# (they sum to 450 s, plus the start); everything is logged to OUT/gpu_check.log.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]          # default OUT_DIR: benchmarks/results/gpu_check
#   PYTHON=... DATA=... bash benchmarks/gpu_check.sh # the interpreter; where the 10^6-cell files go
#
# Needs torch with CUDA, the package's dependencies and its `peers` extra (decoupler); where they are
# missing, install them first (e.g. from wheels brought along:
# `pip install --no-index --no-deps --target /tmp/site wheels/*.whl && export PYTHONPATH=/tmp/site`).
# CollecTRI: REGDECODER_COLLECTRI names the TSV (the realnet step is skipped without it). Nothing here
# is run by CI, which has no GPU.
set -uo pipefail
OUT=${1:-benchmarks/results/gpu_check}
PY=${PYTHON:-python3}
DATA=${DATA:-${TMPDIR:-/tmp}/regdecoder_scale_data}
THREADS=$(nproc)
mkdir -p "$OUT" "$DATA"
export PYTHONUNBUFFERED=1 PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
step() {  # step SECONDS TITLE COMMAND...: run with a time limit, say how it ended and how long it took
  local limit=$1 title=$2
  shift 2
  echo "== $title (limit ${limit}s)"
  local t0=$SECONDS
  timeout --signal=INT --kill-after=10 "$limit" "$@"
  local rc=$?
  echo "-- rc=$rc after $((SECONDS - t0))s$([ $rc -eq 124 ] && echo ' (TIMED OUT)')"
}
{
  echo "== device"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; uptime
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  # the tests marked gpu and those that need CUDA (the CPU suite skips them): latent solver, ALS, fit, images
  step 45 "CUDA tests" "$PY" -m pytest -q -p no:randomly -m "not slow" -rs tests -k "cuda or gpu"
  step 35 "paper setting (1,000 genes, 100 TFs): 10^4 cells, fit + infer on the GPU, mlm/ulm on $THREADS CPU threads" \
    "$PY" benchmarks/realnet.py --device cuda --threads "$THREADS" --settings paper --sizes 10000 --out "$OUT/paper"
  if [ -n "${REGDECODER_COLLECTRI:-}" ]; then
    step 125 "realnet at 10^5 cells: CollecTRI's topology (772 TFs, 6,652 genes), fit and infer 10^5 cells each; mlm/ulm on the first 2x10^4" \
      "$PY" benchmarks/realnet.py --device cuda --threads "$THREADS" --settings collectri --sizes 100000 \
      --decoupler-cells 20000 --exact-cells 100 --out "$OUT/realnet"
  fi
  step 85 "realnet at 10^5 cells: a 10^5-edge net (10,000 genes, 1,000 TFs), fit on 10^4 cells, infer 10^5" \
    "$PY" benchmarks/realnet.py --device cuda --threads "$THREADS" --settings net1e5 --sizes 100000 \
    --fit-cells 10000 --decoupler-cells 20000 --exact-cells 100 --out "$OUT/realnet_net1e5"
  step 130 "10^6 cells x 2,000 genes, 200 TFs (sparse, backed): fit to |PCC| 0.98, infer 10^6 new cells, mlm on 2x10^4" \
    "$PY" benchmarks/scale.py --device cuda --workers "$THREADS" --sizes 1000000 --max-epochs 30 --cell-epochs 1e8 \
    --stop-pcc 0.98 --mlm-cells 20000 --out "$OUT/scale" --data-dir "$DATA"
  step 30 "torch.distributed: the sharded ALS with nccl (one process per GPU) against one process" \
    "$PY" benchmarks/distributed_check.py --backend nccl --nprocs "$(nvidia-smi -L | wc -l)" --device cuda \
    --n-obs 200000 --out "$OUT"
  uptime
} 2>&1 | tee "$OUT/gpu_check.log"
