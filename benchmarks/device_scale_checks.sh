#!/usr/bin/env bash
# A device call (about 5 minutes): the checks not yet run on a GPU -- hopper-fa3's CUDA
# backward suite (key-block pairs: the d256 causal default at 4k-8k and the d64/d128
# variants), the public-API property test on CUDA inputs (auto-dispatch, scales 0 and
# negative, head-dim-strided views, padded varlen buffers), double backward, the
# conformance kit's scale and stride checks for every CUDA backend, and hopper-fa3's GPU
# cases with scale <= 0 (the Triton forward's NEG_SCALE block max).  Logs in $OUT.  Carry .whl.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
step cuda_bwd_gpu_tests ${BWD_SECONDS:-150} python3 -m pytest -q -p no:cacheprovider -m gpu \
    tests/backends/test_hopper_cuda_bwd.py
ATTNHUB_PROPERTY_EXAMPLES=${PROPERTY_EXAMPLES:-30} step property_cuda 100 python3 -m pytest -q \
    -p no:cacheprovider tests/test_auto_dispatch_properties.py tests/test_contract.py \
    -k "auto or double or head_dim_views or past_the_last"
for spec in hopper-fa3:float16 hopper-fa3:bfloat16 triton-fa2:bfloat16 torch-sdpa:bfloat16; do
    b=${spec%%:*}; dt=${spec#*:}
    TAIL=2 step "check_${b}_$dt" 60 attnhub check "$b" --device cuda --quick --dtype "$dt" \
        --select '*scale*' 'strided*'
done
step hopper_fa3_gpu_scale 90 python3 -m pytest -q -p no:cacheprovider \
    tests/backends/test_hopper_fa3.py -k "backend_gpu and scale"
