#!/usr/bin/env bash
# One device call (about 6 minutes): the CUDA backward at the padded head dims (d96 on the
# d128 kernel, d224 on d256; its first run stopped at the pre-pass's tl.arange), then the
# GPU tests of the whole CUDA backward (the pre-pass changed for every head dim) and of
# hopper-fa3 at the head dims it now declares (160, 224).  Everything packed in
# $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
mkdir -p "$OUT/b"
TAIL=30 step bwd_dims 240 env OUT="$OUT/b" SMOKE_DIMS=128 ATTNHUB_HOPPER_CUDA_UNVERIFIED=1 \
    bash benchmarks/device_cuda_bwd.sh --dims 96,224
TAIL=4 step bwd_tests 170 python3 -m pytest -q -m gpu tests/backends/test_hopper_cuda_bwd.py
TAIL=4 step fa3_new_dims 100 python3 -m pytest -q -m gpu tests/backends/test_hopper_fa3.py \
    -k "d160 or d224"
(cd "$OUT" && tar czf /tmp/all.tgz . && mv /tmp/all.tgz "$OUT/all.tgz")
