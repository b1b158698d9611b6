#!/usr/bin/env bash
# Ready for the next session (BUDGET seconds, default 400; carry .whl).
# (0) the Gluon backward's S_AHEAD variants (GLUON_BWD_NOTES "S_AHEAD"), quick cases then the
#     grid's backward points against cuDNN/FLASH, 3 interleaved rounds: m64 (shipped), m64a,
#     m64a2 (d64 only).  Prediction: m64a +0..+4 % at d64, -3..+3 % at d128 (it spills there);
#     m64a2 -2..+5 % at d64.
# (1) Nsight Compute of triton-fa2's forward (the Gluon kernel, pp) against cuDNN at d64 4k,
#     non-causal and causal: what holds d64 at 0.87-0.98x (GLUON_NOTES "Next" 1).
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
budgeted s37 ${BUDGET:-400}
TAIL=30 step gluon_bwd_ahead "$(left 200)" python3 backends/attnhub_triton/gluon_bwd_check.py \
    --out "$RES/gluon_bwd_ahead" --cases quick --rounds 3 --timeout 120 --bench-timeout 180 \
    --variants m64,m64a,m64a2
repack
NCU_SECONDS=$(left 90) ncu_prof fwd_d64_4k --d 64 --s 4096 --impls triton-fa2,cudnn
repack
NCU_SECONDS=$(left 90) ncu_prof fwd_d64_4k_causal --d 64 --s 4096 --causal --impls triton-fa2,cudnn
gpu_clocks
repack
