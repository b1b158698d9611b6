#!/usr/bin/env bash
# Two device calls (twenty-fifth session), after Tile.max_tree shipped on the 16-bit tiles.
# PART=a (about 8 minutes): hopper-fa3's whole GPU suite (forward, backward, FP8,
# conformance, dispatch), the FP8 quick check, the bf16 FA grid with the backward (every
# peer in the same run), and triton-fa2's d128 GPU shard.
# PART=b (about 9 minutes): fp16 backward placement (hopper-fa3 against cuDNN, d128 full and
# d256 causal at 4k / 8k, 8 rounds), triton-fa2's every-autotuning-candidate test at d128 (its check
# that the pinned kernel is the one that ran has not run at d128), the d32/d40 and d72/d96
# shards, then the fp16 FA grid.  Everything in $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
T="python3 -m pytest -q -m gpu -p no:cacheprovider --durations=3"
grid() {  # grid DTYPE SECONDS
    TAIL=3 step fa_grid_$1 $2 python3 benchmarks/fa_grid.py --dtypes $1 \
        --exclude opencl naive torch-sdpa-flash torch-sdpa-cudnn torch-sdpa-efficient \
        --warmup 10 --rep 40 --quiet --out "$OUT/$1"
}
if [ "${PART:-a}" = a ]; then
    TAIL=3 step hopper_gpu_tests 200 $T \
        tests/backends/test_hopper_cuda.py tests/backends/test_hopper_cuda_bwd.py \
        tests/backends/test_hopper_fa3.py tests/test_fp8.py tests/test_first_party_conformance.py \
        tests/test_dispatch.py
    TAIL=8 step fp8_quick 90 python3 backends/attnhub_hopper/cuda_check.py --fp8 --quick --out "$OUT"
    grid bf16 250
    TAIL=3 step triton_d128 110 $T tests/backends/test_triton_fa2.py -k "d128 and not every"
else
    # fp16 run4's backward points under 1.0x cuDNN (bf16 >= 1.0 there), placed in rounds
    A="python3 benchmarks/ab_hopper.py --rounds 8 --dtype fp16 --out $OUT"
    TAIL=8 step ab_fp16_bwd 120 $A --name ab_fp16_bwd_place --seqs 4096,8192 \
        --pair bwd:128:full:default,default --pair bwd:256:causal:default,default
    TAIL=3 step triton_every_d128 200 $T tests/backends/test_triton_fa2.py -k "every and d128"
    TAIL=3 step triton_d32_d96 150 $T tests/backends/test_triton_fa2.py \
        -k "(d32 or d40 or d72 or d96) and not every"
    grid fp16 240
fi
pack_out
