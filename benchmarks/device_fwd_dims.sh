#!/usr/bin/env bash
# A device call (about 6 minutes): the first GPU run of hopper-fa3's CUDA forward at head
# dim 192 and at the head dims the next kernel up serves on TMA's zero fill (96, 160, 224;
# cuda_fwd.kernel_head_dim).  Sixteenth session: built and compiled on the CPU,
# spill-free, refused at run time until this passes (cuda_fwd.UNVERIFIED_HEAD_DIMS,
# PADDED_UNVERIFIED).  The smoke (a hang ends in 90 s), the builds, the tolerance cases and
# the grid against cuDNN / flash / the Triton kernel (device_cuda_fwd.sh --dims ...), then
# the GPU tests that name those head dims.  Everything under $OUT is also packed into
# $OUT/fwd_dims.tgz (the tool returns few files).
# Prediction: every case passes; d192 >= 1.0x cuDNN from 2k; the padded dims beat the
# Triton kernel they replace (it ran 0.62-0.96x cuDNN) by >= 15 %.  Carry .whl.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_HOPPER_CUDA_UNVERIFIED=1
TAIL=40 step fwd_dims_check 450 bash benchmarks/device_cuda_fwd.sh --dims 192,96,160,224
TAIL=6 step fwd_dims_tests 150 python3 -m pytest -q -m gpu tests/backends/test_hopper_cuda.py \
    -k "192 or D48 or D96 or D112 or D160 or D224"
(cd "$OUT" && tar czf fwd_dims.tgz --exclude=fwd_dims.tgz .)
