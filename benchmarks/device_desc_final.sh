#!/usr/bin/env bash
# One device call (about 5 minutes) after the forward's wgmma descriptors became base plus
# offset (desc_add, fa3_common.cuh; eighteenth session): the CUDA forward's GPU tests (every
# shipped tile, the tolerance grid, FP8's rule), the FP8 kernel's quick check and its 16k
# timing against the Triton FP8 kernel and bf16 cuDNN of the same run (the FP8 path
# changed too: 2-4 % fewer instructions, not in the bf16 A/B), then the bf16 FA grid.
# Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
TAIL=4 step fwd_gpu_tests 200 python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_hopper_cuda.py
TAIL=8 step fp8_quick 150 python3 backends/attnhub_hopper/cuda_check.py --fp8 --quick --out "$OUT"
if [ -z "${NO_GRID:-}" ]; then
    ATTNHUB_TRITON_AUTOTUNE=0 TAIL=3 step fa_grid 260 python3 benchmarks/fa_grid.py --dtypes bf16 \
        --exclude torch-sdpa-flash torch-sdpa-cudnn torch-sdpa-efficient --warmup 10 --rep 40 \
        --quiet --out "$OUT"
fi
(cd "$OUT" && tar czf /tmp/all.tgz . && mv /tmp/all.tgz "$OUT/all.tgz")
