#!/usr/bin/env bash
# The paper's image experiments at their full configurations on one CUDA GPU, in at most about
# 10 minutes of wall time:
#   Fig. 2  MNIST: decoder alone, the encoder on its frozen decoder, the autoencoder; 500 ... 15,000
#           training images, 200 epochs, batch 32, the same 1,000 test images;
#   Fig. 3a-c CIFAR10: 1x1 and 4x4 decoders and autoencoders, 50/100/500/5,000 images per class,
#           100 epochs, batch 32, 5 seeds (one at 5,000 per class), a class-balanced tenth of the test set;
#   Fig. 3d-f CIFAR10: the full training set, 400 epochs, reconstructions after 50, 200 and 400 epochs.
# Every configuration is a job (one process); SLOTS jobs run at once on the one GPU. Every training run stops at a common wall-clock deadline (TRAIN_SECONDS after the start)
# and its rows record the epochs it reached, so the script ends in time whatever the GPU's speed;
# runs not started by then are skipped. CIFAR10 runs use bfloat16 autocast (--amp; the losses are
# computed in float32); MNIST runs stay in float32 (its BCE on a bf16 sigmoid would round outputs
# near 1 to 1). Writes the per-job CSV/JSON/PNG/logs and the merged tables under OUTDIR:
# mnist_gpu.{csv,png,json}, mnist_gpu_curves.png, cifar10_gpu.{csv,png}, cifar10_full_gpu.{csv,png},
# the reconstruction grids, and gpu_images.log.
#
#   REGDECODER_MNIST=DIR REGDECODER_CIFAR10=FILE bash benchmarks/gpu_images.sh [OUTDIR]
#
# The machine needs Python with torch (CUDA), numpy, pandas and matplotlib; anndata and scanpy are
# not needed (benchmarks/torch_only.py imports regdecoder's nn, train and datasets without them).
# Environment: PYTHON (python3), DEVICE (cuda), SLOTS (16 jobs at once), TRAIN_SECONDS (450),
# LIMIT (540: each job is killed after this many seconds from the start; the merge then takes seconds), TINY=1 (a dry run at
# tiny sizes and epochs, e.g. with DEVICE=cpu, to check the script end to end), MNIST_EXTRA and
# CIFAR_EXTRA (more flags for those jobs, e.g. "--compile": not tried on a GPU yet).
set -euo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-benchmarks/results/gpu_images}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
SLOTS=${SLOTS:-16}
TRAIN_SECONDS=${TRAIN_SECONDS:-450}
LIMIT=${LIMIT:-540}
: "${REGDECODER_MNIST:?set REGDECODER_MNIST to the folder with the MNIST IDX files}"
: "${REGDECODER_CIFAR10:?set REGDECODER_CIFAR10 to the CIFAR10 .npz(.xz) or the folder of python batches}"
export REGDECODER_MNIST REGDECODER_CIFAR10
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu_images.log"
START=$(date +%s)
STOP_AT=$((START + TRAIN_SECONDS))

if [ "${TINY:-0}" = 1 ]; then  # dry run: every job and merge at tiny sizes
  M_SMALL="20 40"; M_5K=60; M_10K=80; M_15K=100; M_EPOCHS=2; M_INFER=3; M_TEST=20
  C_SMALL="2 3"; C_500=4; C_5K=5; C_SEEDS="0 1"; C_EPOCHS=2; C_FULL_EPOCHS=4; C_GRID="1 2 4"; C_TEST=20
  C_INFER=3; C_EVALS=2; C_FULL_SIZE=6
else
  M_SMALL="500 1000 2000"; M_5K=5000; M_10K=10000; M_15K=15000; M_EPOCHS=200; M_INFER=300; M_TEST=1000
  C_SMALL="50 100"; C_500=500; C_5K=5000; C_SEEDS="0 1 2 3 4"; C_EPOCHS=100; C_FULL_EPOCHS=400; C_GRID="50 200 400"
  C_TEST=1000; C_INFER=100; C_EVALS=10; C_FULL_SIZE=5000
fi

M="benchmarks/mnist.py --device $DEVICE --epochs $M_EPOCHS --infer-iters $M_INFER --n-test $M_TEST --stop-at $STOP_AT"
M="$M ${MNIST_EXTRA:-}"
C="benchmarks/cifar10.py --device $DEVICE --amp --epochs $C_EPOCHS --n-test $C_TEST --infer-iters $C_INFER"
C="$C --n-evals $C_EVALS --stop-at $STOP_AT ${CIFAR_EXTRA:-}"
F="benchmarks/cifar10.py --device $DEVICE --amp --full --sizes $C_FULL_SIZE --seeds 0 --epochs $C_FULL_EPOCHS"
F="$F --grid-epochs $C_GRID --n-test $C_TEST --infer-iters $C_INFER --n-evals $C_EVALS --stop-at $STOP_AT ${CIFAR_EXTRA:-}"

JOBS="$OUTDIR/jobs.txt"
: >"$JOBS"
job() { echo "$1 $2 --out $OUTDIR/$3.csv > $OUTDIR/$3.log 2>&1" >>"$JOBS"; }
# The short configurations first, so that they complete; the long ones (MNIST at 5,000-15,000,
# CIFAR10 at 5,000 per class and the 400-epoch runs) take the slots as these free up and are cut by
# the deadline where the GPU is too slow for them.
for model in 1x1 4x4; do
  for kind in decoder autoencoder; do
    job "$C" "--models $model --kinds $kind --sizes $C_SMALL --seeds $C_SEEDS" "cifar10_${model}_${kind}_small"
  done
done
tag=${M_SMALL// /_}
job "$M" "--sizes $M_SMALL --models decoder encoder" "mnist_${tag}_decoder_encoder"
job "$M" "--sizes $M_SMALL --models autoencoder" "mnist_${tag}_autoencoder"
for seed in $C_SEEDS; do
  for model in 1x1 4x4; do
    for kind in decoder autoencoder; do
      job "$C" "--models $model --kinds $kind --sizes $C_500 --seeds $seed" "cifar10_${model}_${kind}_${C_500}_s${seed}"
    done
  done
done
for size in $M_5K $M_10K $M_15K; do
  job "$M" "--sizes $size --models decoder encoder" "mnist_${size}_decoder_encoder"
  job "$M" "--sizes $size --models autoencoder" "mnist_${size}_autoencoder"
done
for model in 1x1 4x4; do
  for kind in decoder autoencoder; do
    job "$C" "--models $model --kinds $kind --sizes $C_5K --seeds 0" "cifar10_${model}_${kind}_${C_5K}"
    job "$F" "--models $model --kinds $kind" "cifar10_full_${model}_${kind}"
  done
done

{
  echo "== $(date -u) gpu_images.sh: $(wc -l <"$JOBS") jobs, $SLOTS at once, training deadline ${TRAIN_SECONDS}s, kill at ${LIMIT}s"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "(no nvidia-smi)"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
} 2>&1 | tee "$LOG"

# Each job gets what is left of LIMIT when its slot frees up; a killed job keeps the runs it finished.
run_job() {
  local left=$((START + LIMIT - $(date +%s)))
  if [ "$left" -le 5 ]; then echo "skipped (no time left): $1"; return 0; fi
  timeout --signal=TERM "$left" bash -c "$PY $1" || echo "exit $? after $(($(date +%s) - START))s: $1"
}
export -f run_job
export PY START LIMIT
tr '\n' '\0' <"$JOBS" | xargs -0 -P "$SLOTS" -I{} bash -c 'run_job "$1"' _ {} 2>&1 | tee -a "$LOG"

{
  echo "== $(date -u) jobs done after $(($(date +%s) - START))s; merging"
  shopt -s nullglob
  mnist=("$OUTDIR"/mnist_*_*.csv)
  cifar=()
  for f in "$OUTDIR"/cifar10_1x1_*.csv "$OUTDIR"/cifar10_4x4_*.csv; do cifar+=("$f"); done
  full=("$OUTDIR"/cifar10_full_*.csv)
  if [ ${#mnist[@]} -gt 0 ]; then "$PY" benchmarks/mnist.py --plot-only "${mnist[@]}" --out "$OUTDIR/mnist_gpu.csv"; fi
  if [ ${#cifar[@]} -gt 0 ]; then "$PY" benchmarks/cifar10.py --plot-only "${cifar[@]}" --out "$OUTDIR/cifar10_gpu.csv" | tail -3; fi
  if [ ${#full[@]} -gt 0 ]; then "$PY" benchmarks/cifar10.py --plot-only "${full[@]}" --out "$OUTDIR/cifar10_full_gpu.csv" | tail -3; fi
  echo "== $(date -u) finished after $(($(date +%s) - START))s"
} 2>&1 | tee -a "$LOG"
