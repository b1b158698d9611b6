#!/usr/bin/env bash
# Second call of the thirty-third session (BUDGET seconds, default 540; carry .whl).
# (0) The hopper-fa3 GPU suites on the final tree (Tile.split at d64, d224 on d256's tile):
#     forward, backward, split, FP8, conformance, dispatch (716 passed / 4 skipped in s28).
# (1) ncu of the backward at d128 non-causal 4k, hopper-fa3 and cuDNN (0.975x in run20,
#     0.999x in run19, 1.018-1.026x placed in rounds in s29): where the time goes.
# (2) The shipped d128 non-causal backward placed again at 4k and 8k (8 rounds, cuDNN each).
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s33b 540
TAIL=3 step hopper_gpu_tests "$(left 230)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    --durations=3 tests/backends/test_hopper_cuda.py tests/backends/test_hopper_cuda_bwd.py \
    tests/backends/test_hopper_fa3.py tests/backends/test_hopper_split.py tests/test_fp8.py \
    tests/test_first_party_conformance.py tests/test_dispatch.py
repack
NCU_SECONDS=$(left 120) ncu_prof bwd_d128_4k --d 128 --s 4096 --backward --impls hopper-fa3,cudnn
repack
TAIL=6 step ab_bwd_d128 "$(left 150)" python3 benchmarks/ab_hopper.py --out "$RES" --rounds 8 \
    --name ab_bwd_place_d128_s33 --seqs 4096,8192 --pair bwd:128:full:default,default
gpu_clocks
repack
