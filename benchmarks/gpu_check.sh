#!/usr/bin/env bash
# The GPU check of issue 12 on one GPU (~6-9 min): every CUDA path, logs and summary.json in gpu_check_out/.
#   bash benchmarks/gpu_check.sh [--out DIR] [more benchmarks/gpu_check.py options, e.g. --parts test onnx]
# Paste the summary table into benchmarks/RESULTS.md (GPU section). Exit status 1 if any part failed.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python benchmarks/gpu_check.py --device cuda --out gpu_check_out "$@"
