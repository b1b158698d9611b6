#!/usr/bin/env bash
# One device call (about 3 minutes): Nsight Compute on hopper-fa3's CUDA forward against
# cuDNN: bf16 d128/16k and d128/2k (the short-sequence gap), FP8 d256/16k.  Carry .whl.
set -u
source benchmarks/device_setup.sh
ncu_prof cuda_fwd_d128_16k --d 128 --s 16384 --impls hopper-fa3,cudnn
ncu_prof cuda_fwd_d128_2k --d 128 --s 2048 --impls hopper-fa3,cudnn
ncu_prof cuda_fp8_d256_16k --d 256 --s 16384 --impls hopper-fa3,cudnn --fp8
