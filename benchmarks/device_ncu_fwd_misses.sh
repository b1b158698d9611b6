#!/usr/bin/env bash
# One device call (about 5 minutes): Nsight Compute on hopper-fa3's CUDA forward against
# cuDNN at the grid points where issue 4's forward target (>= 1.05x cuDNN) is missed
# (sixteenth session's grids): d64 2k causal (0.94-0.97x), d128 2k and 4k non-causal
# (0.98-1.02x), d256 4k non-causal (0.96-1.00x).  Reports in $OUT/ncu_fwd_*.txt.  Carry .whl.
set -u
source benchmarks/device_setup.sh
ncu_prof fwd_d64_2k_causal --d 64 --s 2048 --causal --impls hopper-fa3,cudnn
ncu_prof fwd_d128_2k --d 128 --s 2048 --impls hopper-fa3,cudnn
ncu_prof fwd_d128_4k --d 128 --s 4096 --impls hopper-fa3,cudnn
ncu_prof fwd_d256_4k --d 256 --s 4096 --impls hopper-fa3,cudnn
