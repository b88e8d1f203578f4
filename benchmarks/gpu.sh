# rnnlab on a CUDA machine: its environment, the GPU tests, cuDNN against rnnlab's CPU kernels with TF32 on and
# off, the quick lab and the full lab with --device cuda. Writes OUT/*.txt and OUT/{quick,full}/ (the labs).
#   bash benchmarks/gpu.sh DATA OUT      # DATA: a folder with train.parquet and test.parquet
# Run on one H200 with 16 cores (results: benchmarks/results/gpu_h200/, lab_h200_*/; docs/PERFORMANCE.md).
set -u
DATA=$(realpath "$1") OUT=$(realpath -m "$2"); mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
t() { local s=$SECONDS; "$@"; echo "[exit $? after $((SECONDS - s)) s: $*]"; }
{
  date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc
  python3 -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name(0))"
} 2>&1 | tee "$OUT/env.txt"
t python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/test_gpu.txt"
t python3 benchmarks/cudnn_tf32.py 2>&1 | tee "$OUT/cudnn_tf32.txt"
t python3 -m rnnlab lab --quick --data "$DATA" --out "$OUT/quick" --device cuda 2>&1 | tee "$OUT/quick_lab.txt"
t python3 -m rnnlab lab --data "$DATA" --out "$OUT/full" --device cuda 2>&1 | tee "$OUT/full_lab.txt"
