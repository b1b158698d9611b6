#!/usr/bin/env bash
# A device call (about 4 minutes): the checks the CPU fuzzer motivated, on CUDA inputs --
# the public-API property test (auto-dispatch, scales 0 and negative), double backward,
# the conformance kit's scale and stride checks for every CUDA backend, and hopper-fa3's GPU cases
# (the Triton forward's NEG_SCALE block max).  Logs in $OUT.  Carry .whl.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
ATTNHUB_PROPERTY_EXAMPLES=${PROPERTY_EXAMPLES:-40} timeout 150 python3 -m pytest -q \
    -p no:cacheprovider tests/test_auto_dispatch_properties.py tests/test_contract.py \
    -k "auto or double" > "$OUT/property_cuda.txt" 2>&1
echo "property rc=$?"; tail -4 "$OUT/property_cuda.txt"
for b in hopper-fa3 triton-fa2 torch-sdpa; do
    for dt in float16 bfloat16; do
        timeout 60 attnhub check $b --device cuda --quick --dtype $dt --select '*scale*' 'strided*' \
            > "$OUT/check_scale_${b}_$dt.txt" 2>&1
        echo "$b $dt rc=$?"; tail -3 "$OUT/check_scale_${b}_$dt.txt"
    done
done
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/backends/test_hopper_fa3.py \
    -k "backend_gpu" > "$OUT/hopper_fa3_gpu.txt" 2>&1
echo "hopper-fa3 gpu rc=$?"; tail -6 "$OUT/hopper_fa3_gpu.txt"
