#!/usr/bin/env bash
# A device call (about 8 minutes): hopper-fa3's d256 backward with `BwdTile.relay` (fifteenth
# session: built and compiled on the CPU, spill-free, never run).  Warpgroup 0 hands Pᵀ to
# warpgroup 1, which alone forms dSᵀ and hands it back through the same 16 KB buffer, so a
# 2-deep Q/dO ring fits at d256.  First the tracing builds (a hang is reported after 15 s
# with the phase each role reached) and the tolerance cases of the relay tiles
# (device_cuda_bwd.sh, no timing grid), then the phase split of the shipped tile against
# the relay builds and interleaved A/B rounds against the shipped tile, with cuDNN in every
# round.  Prediction: s2 relay +3..+8 % at 2k-16k (q_wait was 11-14 % of the consumers'
# cycles with one stage; a quarter less swap traffic), s1 relay 0..+2 %.  Carry .whl.
# Run on 2026-12-06: ab_hopper_h100_2026-12-06_run4..6; s2-atomic-v4-relay now ships.
set -u
source benchmarks/device_setup.sh
export ATTNHUB_HOPPER_CUDA_BWD=1
RELAY=s1-atomic-v4-relay,s2-atomic-v4-relay,s2-atomic-v4-fold-relay
SMOKE_DIMS=256 SMOKE_TILES=$RELAY TAIL=14 step relay_check 260 \
    bash benchmarks/device_cuda_bwd.sh --dims 256 --tiles "$RELAY" --no-grid
TAIL=60 PHASE_TILES='256:s1-atomic-v4,s1-atomic-v4-relay,s2-atomic-v4-relay' \
    step relay_phases_ab 330 bash benchmarks/device_bwd_phases.sh --rounds 4 \
    --seqs 2048,4096,8192,16384 --name ab_relay \
    --pair bwd:256:full:s1-atomic-v4,s2-atomic-v4-relay \
    --pair bwd:256:causal:s1-atomic-v4,s2-atomic-v4-relay
