#!/usr/bin/env bash
# One call on the lent H100: install, full FA grid (bf16) with every backend, auto-dispatch and
# the SDPA peers in one run, the torch-sdpa conformance kit on CUDA, and the opencl tests on
# NVIDIA's OpenCL driver.  Results land in $OUT.  Carry .whl (stevedore, platformdirs,
# pyopencl, pytools, siphash24).
set -u
source benchmarks/device_setup.sh
python3 -c "import attnhub; print(attnhub.__version__, [(i.name, i.status, i.reason[:80]) for i in attnhub.list_backends()])"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv
# Fixed per-head-dim configs: autotuning every grid key would not fit the lease.
ATTNHUB_TRITON_AUTOTUNE=0 timeout -s INT ${BENCH_SECONDS:-330} python3 benchmarks/fa_grid.py \
    --dtypes bf16 --exclude torch-sdpa-flash torch-sdpa-cudnn torch-sdpa-efficient \
    --warmup 10 --rep 40 --quiet --out "$OUT" 2>&1 | tee "$OUT/fa_grid_log.txt" | tail -150
timeout 60 python3 plugins/attnhub-torch-sdpa/tools/gpu_check.py "$OUT" > "$OUT/torch_sdpa_gpu_check.txt" 2>&1
tail -40 "$OUT/torch_sdpa_gpu_check.txt"
mkdir -p /tmp/vendors && echo libnvidia-opencl.so.1 > /tmp/vendors/nvidia.icd
OCL_ICD_VENDORS=/tmp/vendors ATTNHUB_OPENCL_DEVICE=NVIDIA timeout 60 python3 -m pytest -q -x \
    -p no:cacheprovider tests/backends/test_opencl.py > "$OUT/opencl_nvidia_tests.txt" 2>&1
tail -5 "$OUT/opencl_nvidia_tests.txt"
