#!/usr/bin/env bash
# A device call (about 5 minutes): the first GPU run of hopper-fa3's CUDA forward at head
# dim 192 (sixteenth session: built and compiled on the CPU, spill-free, refused at run time
# until this passes; cuda_fwd.UNVERIFIED_HEAD_DIMS).  The smoke (a hang ends in 90 s), the
# builds, the tolerance cases of every d192 variant and the grid against cuDNN / flash /
# the Triton kernel (device_cuda_fwd.sh --dims 192), then the GPU tests that name d192.
# Everything under $OUT is also packed into $OUT/d192.tgz (the tool returns few files).
# Prediction: every case passes; >= 1.0x cuDNN from 2k.  Carry .whl.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_HOPPER_CUDA_UNVERIFIED=1
TAIL=30 step d192_check 420 bash benchmarks/device_cuda_fwd.sh --dims 192
TAIL=6 step d192_tests 150 python3 -m pytest -q -m gpu tests/backends/test_hopper_cuda.py -k 192
(cd "$OUT" && tar czf d192.tgz --exclude=d192.tgz .)
