#!/usr/bin/env bash
# One prepared run on a machine with a CUDA GPU: the CUDA tests, then the paper setting and the
# 10^6-cell scale setting on the device, each printed as a table; everything is logged under OUT.
#
#   bash benchmarks/gpu_check.sh OUT_DIR            # PYTHON=... to choose the interpreter
#
# Needs torch with CUDA, and the package's dependencies (anndata with pandas < 3, scanpy, scipy,
# tqdm); where they are missing, install them first (e.g. from wheels brought along:
# `pip install --no-index --no-deps --target /tmp/site wheels/*.whl && export PYTHONPATH=/tmp/site`).
# Nothing here is run by CI, which has no GPU.
set -uo pipefail
OUT=${1:-gpu_check_out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
{
  echo "== device"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  echo "== CUDA tests (the CPU suite skips them)"
  "$PY" -m pytest -q -p no:randomly tests -k "cuda or gpu" -rs 2>&1 | tail -15
  echo "== paper setting (1,000 genes, 100 TFs), time to held-out PCC 0.99, default vs the paper's recipe"
  "$PY" benchmarks/speed.py --device cuda --sizes 10000 --noise 0.2 --out "$OUT/speed_cuda.csv" 2>&1 | tail -8
  echo "== scale setting: 10^6 cells x 2,000 genes, 200 TFs, sparse counts; fit to |PCC| 0.98 and infer 10^6 new cells"
  "$PY" benchmarks/scale.py --device cuda --workers 12 --sizes 1000000 --max-epochs 30 --stop-pcc 0.98 \
    --mlm-cells 100000 --out "$OUT/scale" --data-dir "${TMPDIR:-/tmp}/regdecoder_scale_data" 2>&1 | tail -12
  echo "== torch.distributed: the sharded ALS with nccl (one process per GPU) against one process"
  "$PY" benchmarks/distributed_check.py --backend nccl --nprocs "$(nvidia-smi -L | wc -l)" --device cuda \
    --n-obs 200000 --out "$OUT" 2>&1 | tail -3
  echo "== epochs and seconds to |PCC| 0.98 / 0.99 per ALS variant, 10^5 cells on the device"
  "$PY" benchmarks/epochs.py --n 100000 --device cuda --out "$OUT/epochs" 2>&1 | tail -6
} 2>&1 | tee "$OUT/gpu_check.log"
