#!/usr/bin/env bash
# One device call (about 6 minutes; nineteenth session) after the forward's P·V wait moved
# after the softmax's exps and every 16-bit tile became lazy (Tile.lazy): the CUDA
# forward's GPU tests (every shipped tile, the tolerance grid, FP8's rule), then the FP8
# kernel's quick check and 16k timing (the FP8 path has the moved wait too, not lazy).
# Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
TAIL=4 step fwd_gpu_tests 240 python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_hopper_cuda.py
TAIL=8 step fp8_quick 200 python3 backends/attnhub_hopper/cuda_check.py --fp8 --quick --out "$OUT"
pack_out
