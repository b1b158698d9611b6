#!/usr/bin/env bash
# Ready for the next session's second call (BUDGET seconds, default 575; carry .whl): the bf16 FA
# grid through every backend with triton-fa2's s39 defaults (pp-dynamic forward at d64/d128,
# m64o d128 and h64 d256 backward), auto-dispatch from an empty cache, 2 timing rounds a
# point; the first grid since run20 (s33) with triton-fa2's Gluon kernels in it.  Before it,
# Nsight Compute of the d128 and d256 backward at 4k: triton-fa2 (Gluon m64o / h64) against
# hopper-fa3's CUDA backward (1.00-1.07x / 1.01-1.12x cuDNN) and cuDNN -- where the Gluon
# one's 0.79-0.86x / 0.68-0.75x goes (h64's N = 32 Sᵀ/dPᵀ products read 96 B of shared
# memory a cycle at the tensor ceiling, against 64 for N = 64: the first thing to read) --
# and the 1k d64 A/B (plain-Triton default vs Gluon pp-dynamic through the backend; decides
# GLUON_MIN_KEYS[(64, False)]; prediction: Gluon +5..+12 %) -- and pp3-dynamic against
# pp-dynamic at d64 (FA3's d64 shape, three 64-row consumers, on the dynamic grid; quick
# cases, then 6 points, 2 rounds; prediction -4..+5 %: more softmax to hide each GEMM under
# against 160 registers and 20 B of spills non-causal).
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s40b ${BUDGET:-575}
NCU_SECONDS=$(left 90) ncu_prof bwd_d128_4k --d 128 --s 4096 --backward \
    --impls triton-fa2,hopper-fa3,cudnn
repack
NCU_SECONDS=$(left 90) ncu_prof bwd_d256_4k --d 256 --s 4096 --backward \
    --impls triton-fa2,hopper-fa3,cudnn
repack
TAIL=14 step ab_d64_1k "$(left 60)" python3 benchmarks/ab_hopper.py --out "$RES" --rounds 3 \
    --name ab_tri_gluon_dyn_1k_s40 --seqs 1024 \
    --pair tri:64:full:default,gluon_dyn --pair tri:64:causal:default,gluon_dyn
repack
TAIL=30 step gluon_fwd_pp3 "$(left 90)" python3 backends/attnhub_triton/gluon_check.py \
    --out "$RES/gluon_fwd_pp3" --cases quick --rounds 2 --timeout 80 --bench-timeout 60 \
    --variants pp-dynamic,pp3-dynamic --bench-anyway \
    --points 2048x64,4096x64,16384x64,2048x64c,4096x64c,16384x64c
repack
grid_step bf16_r2 "$(left 240)" bf16 --rounds 2
gpu_clocks
repack
