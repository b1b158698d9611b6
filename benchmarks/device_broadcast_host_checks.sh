#!/usr/bin/env bash
# A device call (about 4 minutes): what the fourteenth session changed without a GPU to
# check it -- broadcast (stride-0) views on every CUDA backend (TMA refusals), triton-fa2's
# eager custom-op bypass (d64 shard, compile and CUDA-graph tests) and d64 lean threshold,
# the host time per call after the changes, and what TMA does with stride 0
# (tma_stride0_probe.py, a measurement).  Logs in $OUT (`step`: device_setup.sh).  Carry .whl.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_TRITON_AUTOTUNE=0
step broadcast_views 60 python3 -m pytest -q -p no:cacheprovider tests/test_contract.py \
    -k broadcast -rs
step triton_d64_compile_graph 120 python3 -m pytest -q -p no:cacheprovider -m gpu \
    tests/backends/test_triton_fa2.py -k "(d64 and not every) or compile or graph"
TAIL=12 step tma_stride0_probe 60 python3 benchmarks/tma_stride0_probe.py
TAIL=30 step host_overhead 90 python3 benchmarks/host_overhead.py --out "$OUT" \
    --points 128:512:1,64:512:1,64:1024:1 --backends triton-fa2,hopper-fa3,torch-sdpa
