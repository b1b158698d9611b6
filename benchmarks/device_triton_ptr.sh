#!/usr/bin/env bash
# One device call (about 7 minutes; twenty-fourth session): triton-fa2's d64 forward on
# pointer loads with the floor kernel's 8-warp tile (ops.POINTER_FWD, "fwd_ptr") against the
# path it replaces, in interleaved rounds with cuDNN in each (512 to 16k keys, causal and
# not); the d64 bf16 FA grid with it on by default; then the GPU tests: triton-fa2's d64
# shard and torch.compile / CUDA graphs, and hopper-fa3's whole GPU suite (forward, backward,
# FP8, conformance, dispatch).  Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
TAIL=14 step ab_tri_ptr 200 python3 benchmarks/ab_hopper.py --rounds 8 --name ab_tri_ptr \
    --seqs 512,1024,2048,4096,8192,16384 --out "$OUT" \
    --pair tri:64:causal:noptr,ptr --pair tri:64:full:noptr,ptr
TAIL=3 step fa_grid_d64 120 python3 benchmarks/fa_grid.py --dtypes bf16 --head-dims 64 \
    --exclude opencl naive torch-sdpa-flash torch-sdpa-cudnn torch-sdpa-efficient \
    --warmup 10 --rep 40 --quiet --out "$OUT"
TAIL=3 step triton_gpu_tests 120 python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_triton_fa2.py -k "(d64 and not every) or compile or graph or pointer"
TAIL=3 step hopper_gpu_tests 280 python3 -m pytest -q -m gpu -p no:cacheprovider \
    tests/backends/test_hopper_cuda.py tests/backends/test_hopper_cuda_bwd.py \
    tests/backends/test_hopper_fa3.py tests/test_fp8.py tests/test_first_party_conformance.py \
    tests/test_dispatch.py
pack_out
