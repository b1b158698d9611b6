#!/usr/bin/env bash
# One device call (about 3 minutes; twenty-fourth session): triton-fa2's every-autotuning-
# candidate GPU test at d64, causal and not, now with the pointer-load forward ("fwd_ptr")
# among the kinds and a check that each pinned kernel is the one that ran.  The log in
# $OUT/all.tgz.  Carry .whl.
set -u
source benchmarks/device_setup.sh
TAIL=3 step triton_every_d64 280 python3 -m pytest -q -m gpu -p no:cacheprovider --durations=3 \
    tests/backends/test_triton_fa2.py -k "every and d64"
pack_out
