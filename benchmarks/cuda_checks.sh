#!/usr/bin/env bash
# The checks that need a GPU, in one run: the test suite with its CUDA-parametrised tests (the app's tests left
# out: they need Streamlit and a browser), then the CUDA rows of the search, training and audit speed benchmarks.
#
#     bash benchmarks/cuda_checks.sh [LOG_DIR]      # about 6 minutes on one H200; logs to LOG_DIR (cuda_checks/)
#
# It uses the python3 on the PATH with the project importable from this checkout (PYTHONPATH), so it also runs
# where nothing can be installed. Each step has a time limit; a step that fails does not stop the next.
set -uo pipefail
cd "$(dirname "$0")/.."
log=${1:-cuda_checks}
mkdir -p "$log"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python3 - <<'EOF' 2>&1 | tee "$log/env.txt"
import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device'}")
EOF
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to LOG_DIR/NAME.txt, report its exit status
    local name=$1 seconds=$2
    shift 2
    echo "== $name: $*"
    timeout "$seconds" "$@" 2>&1 | tee "$log/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]}" | tee -a "$log/status.txt"
}
xdist=$(python3 -c "import xdist" 2>/dev/null && echo "-n 8")
step pytest_cuda 120 python3 -m pytest -q -p no:cacheprovider -k cuda tests --ignore=tests/test_app.py \
    --ignore=tests/test_app_browser.py
step training_speed 180 python3 benchmarks/sa_accuracy.py --speed-only
step search_speed 90 python3 benchmarks/search_speed.py --quick
# two threads per test process: 8 processes of 16 threads each had the suite 86 % through after 230 s
OMP_NUM_THREADS=2 step pytest 240 python3 -m pytest -q -p no:cacheprovider $xdist tests --ignore=tests/test_app.py \
    --ignore=tests/test_app_browser.py
step audit_speed 240 python3 benchmarks/audit_speed.py --device cuda
