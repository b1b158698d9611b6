#!/usr/bin/env bash
# A call on the lent H100 (about 8 minutes): the conformance kit for the GPU-only first-party backends, and
# the opencl tests on NVIDIA's OpenCL driver.  Carry .whl.
set -u
source benchmarks/device_setup.sh
# Autotuning every conformance shape took > 50 s per backend (2026-11-23): fixed configs.
export ATTNHUB_TRITON_AUTOTUNE=0
for b in triton-fa2 hopper-fa3; do
    timeout 150 attnhub check $b --device cuda --quick --dtype bfloat16 > "$OUT/check_$b.txt" 2>&1
    echo "$b rc=$?"; tail -4 "$OUT/check_$b.txt"
done
mkdir -p /tmp/vendors && echo libnvidia-opencl.so.1 > /tmp/vendors/nvidia.icd
OCL_ICD_VENDORS=/tmp/vendors ATTNHUB_OPENCL_DEVICE=NVIDIA timeout 240 python3 -m pytest -q \
    -p no:cacheprovider tests/backends/test_opencl.py > "$OUT/opencl_nvidia_tests.txt" 2>&1
echo "opencl rc=$?"; tail -5 "$OUT/opencl_nvidia_tests.txt"
