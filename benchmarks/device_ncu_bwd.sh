#!/usr/bin/env bash
# One device call (about 4 minutes): Nsight Compute on hopper-fa3's CUDA backward against
# cuDNN's, bf16 non-causal 16k: d128 with the shipped tile and with $TILE (default
# s2-ahead, through ATTNHUB_HOPPER_BWD_TILE), and d256 (the L2-bandwidth question in
# NOTES.md).  Adds the L2 / memory sections to the usual ones.  Carry .whl.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_HOPPER_CUDA_BWD=1
NCU_SECTIONS="$NCU_SECTIONS --section MemoryWorkloadAnalysis_Chart --section MemoryWorkloadAnalysis_Tables"
NCU_SECONDS=${NCU_SECONDS:-100}
ncu_prof cuda_bwd_d128_16k --d 128 --s 16384 --backward --impls hopper-fa3,cudnn
ATTNHUB_HOPPER_BWD_TILE=${TILE:-s2-ahead} ncu_prof cuda_bwd_d128_16k_${TILE:-s2-ahead} \
    --d 128 --s 16384 --backward --impls hopper-fa3
ncu_prof cuda_bwd_d256_16k --d 256 --s 16384 --backward --impls hopper-fa3,cudnn
