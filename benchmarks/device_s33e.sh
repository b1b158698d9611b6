#!/usr/bin/env bash
# Fifth call of the thirty-third session (BUDGET seconds, default 200; carry .whl): the
# close call through the public path.  The dispatch GPU tests on the new code, then a small
# grid at d128 8k / 16k (where one-after-another picked torch's SDPA for training shapes),
# auto from an empty dispatch cache against hopper-fa3 pinned and the SDPA peers, 3 rounds.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s33e 200
TAIL=3 step dispatch_gpu_tests "$(left 60)" python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/test_dispatch.py tests/test_auto_dispatch_properties.py
repack
ATTNHUB_CACHE_DIR="$RES/grid/dispatch" TAIL=30 step grid "$(left 120)" python3 benchmarks/fa_grid.py \
    --dtypes bf16 --head-dims 128 --seqlens 8192 16384 --methods hopper-fa3 torch-sdpa auto \
    sdpa-cudnn sdpa-flash --warmup 10 --rep 40 --rounds 3 --quiet --out "$RES/grid"
repack
