"""The Gluon backward's HSPLIT build (``hsplit=1``, variant ``h64``: 64-key CTAs whose two
warpgroups split the query block for Sᵀ / dPᵀ and the head dim for dK / dV / dQ -- the
first Gluon backward that builds at d256) and the ``kv_opaque`` knob (variant ``m64o``: K
and V's wgmma descriptors rebuilt per iteration); GLUON_BWD_NOTES.md, "Thirty-seventh
session".

On the CPU: the knobs' validation and the d256 default, the block schedule replayed in
float32 (``gluon_bwd_check.emulate(hsplit=1)``) against a float64 reference with a negative
control, and -- where Triton's bundled ptxas is present -- offline sm90 builds that must use
no local memory and the wgmma shapes the design promises.  Running the kernel is the GPU
check's job (``gluon_bwd_check.py``, ``device_s37b.sh``).
"""

import os

import pytest

pytest.importorskip("triton", reason="triton is not installed: pip install attnhub[triton]")

import torch  # noqa: E402

from gluon_testing import (BWD_BUILD, check_bwd_emulation, check_module, gluon_bwd,  # noqa: E402
                           has_ptxas, kernel_dir, run_build)

GLUON_BWD, needs_gluon_bwd = gluon_bwd()
HERE = kernel_dir()


@needs_gluon_bwd
def test_d256_defaults_to_hsplit_and_the_others_keep_the_key_split():
    """d256: the HSPLIT build; d64 m64 and d128 m64o (the measured defaults, the key split
    either way, d128 with K and V's descriptors rebuilt per iteration)."""
    cfg = GLUON_BWD.resolve_config(256)
    # dQ: each warpgroup's 128 columns in two 64-column chunks (h64w: one)
    assert (cfg["HSPLIT"], cfg["BLOCK_M"], cfg["DQ_SPLIT"], cfg["KV_OPAQUE"]) == (1, 64, 2, 1)
    assert GLUON_BWD.resolve_config(256, variant="h64w")["DQ_SPLIT"] == 1
    assert GLUON_BWD.resolve_config(128, variant="h64")["DQ_SPLIT"] == 1  # 64 columns each
    # Q, dO (2 stages) + K, V (64 keys) + P, dS (2 parities), 16-bit, + barriers
    assert cfg["smem_estimate"] == 2 * (2 * 2 * 64 * 256 + 2 * 64 * 256 + 4 * 64 * 64) + 1024
    assert cfg["smem_estimate"] <= 232448
    for d in (64, 128):
        assert GLUON_BWD.resolve_config(d)["HSPLIT"] == 0
        assert GLUON_BWD.resolve_config(d)["KV_OPAQUE"] == (d == 128)
        assert GLUON_BWD.resolve_config(d)["S_AHEAD"] == 0  # m64a / m64a2 fail on the GPU
    assert GLUON_BWD.resolve_config(128, variant="m64")["KV_OPAQUE"] == 0
    assert GLUON_BWD.resolve_config(128, variant="h64")["HSPLIT"] == 1
    assert GLUON_BWD.resolve_config(128, variant="m64o")["KV_OPAQUE"] == 1
    ao = GLUON_BWD.resolve_config(128, variant="m64ao")
    assert (ao["KV_OPAQUE"], ao["S_AHEAD"]) == (1, 1)
    assert GLUON_BWD.resolve_config(256, variant="h64", dq_vec=4)["DQ_VEC"] == 4
    assert {"hsplit", "kv_opaque"} <= set(GLUON_BWD.KNOBS)
    chk = check_module("gluon_bwd_check")
    assert {"h64", "m64o", "m64ao"} <= set(chk.DEFAULT_VARIANTS.split(","))
    assert any(c[5] == 256 for c in chk.case_list("quick"))
    assert any(D == 256 for _, D, _ in chk.BENCH_POINTS)


@needs_gluon_bwd
@pytest.mark.parametrize("d,knobs,what", [
    (256, dict(variant="m64"), "head dim 256 needs hsplit=1"),
    (256, dict(hsplit=0), "head dim 256 needs hsplit=1"),
    (64, dict(variant="h64"), r"hsplit=1 needs head dim in \(128, 256\)"),
    (96, dict(variant="h64"), "head dim 96 not in"),
    (256, dict(variant="h64", stages=3), "shared memory"),
    (256, dict(variant="h64", block_m=128), "block_m=128 with hsplit=1"),
    (256, dict(variant="h64", dq_split=3), r"dq_split=3 with hsplit=1 at d256: 2 \(64-column"),
    (128, dict(variant="h64", dq_split=2), r"dq_split=2 with hsplit=1 at d128: 1"),
    (256, dict(variant="h64", dq_tma=1), "dq_tma=1 does not apply"),
    (256, dict(variant="h64", s_ahead=1), "s_ahead=1 does not apply"),
    (256, dict(variant="h64", dq_vec=1), "dq_vec=1 with hsplit=1"),
    (256, dict(variant="h64", kv_opaque=0), "kv_opaque does not apply"),
    (128, dict(hsplit=2), "hsplit=2"), (128, dict(hsplit=True), "hsplit=True"),
    (128, dict(kv_opaque=2), "kv_opaque=2"),
])
def test_bad_hsplit_knobs_raise_a_value_error_naming_them(d, knobs, what):
    with pytest.raises(ValueError, match=what):
        GLUON_BWD.resolve_config(d, **knobs)


@needs_gluon_bwd
@pytest.mark.parametrize("B,Hq,Hk,Sq,Sk,D,causal,dtype", [
    (1, 2, 2, 113, 203, 256, True, torch.bfloat16),
    (1, 2, 2, 203, 113, 256, True, torch.float16),   # rows that see no key: dQ = 0
    (1, 4, 2, 150, 150, 128, True, torch.bfloat16),  # GQA, a causal edge inside a block
    (1, 2, 1, 100, 300, 128, False, torch.bfloat16),  # MQA, Sk not a multiple of 64
])
@pytest.mark.parametrize("hsplit", [1, 2])
def test_hsplit_schedule_matches_the_reference(B, Hq, Hk, Sq, Sk, D, causal, dtype, hsplit):
    """64-key CTAs, the mask decided per warpgroup's query half (hsplit=1) or for the whole
    block (hsplit=2, the role split, whose dS is formed from P already rounded to 16 bits),
    16-bit P and dS, dQ summed over key blocks: dQ, dK, dV within 2x torch's own
    low-precision error against float64; a dropped causal mask is caught."""
    # (past Sk, K and V are zero-filled: dropping that mask changes no kept gradient, so the
    # negative control bites under causal masking only)
    check_bwd_emulation((B, Hq, Hk, Sq, Sk, D), causal, dtype, seed=Sq * 7 + Sk + D,
                        negative=causal, hsplit=hsplit)


@needs_gluon_bwd
def test_role_split_variants_resolve_and_refuse_what_they_cannot_build():
    r = GLUON_BWD.resolve_config(256, variant="h64r")
    assert (r["HSPLIT"], r["BLOCK_M"], r["DQ_SPLIT"], r["KV_OPAQUE"]) == (2, 64, 2, 1)
    assert GLUON_BWD.resolve_config(256, variant="h64rw")["DQ_SPLIT"] == 1
    assert GLUON_BWD.resolve_config(128, variant="h64r")["HSPLIT"] == 2
    # the same buffers as HSPLIT (P and dS of two parities), two barriers more
    assert r["smem_estimate"] == GLUON_BWD.resolve_config(256)["smem_estimate"]
    for d, knobs, what in ((64, dict(variant="h64r"), r"hsplit=2 needs head dim in \(128,"),
                           (256, dict(hsplit=3), "hsplit=3"),
                           (256, dict(variant="h64r", s_ahead=1), "does not apply with hsplit=2"),
                           (256, dict(variant="h64r", block_m=128), "block_m=128 with hsplit=2")):
        with pytest.raises(ValueError, match=what):
            GLUON_BWD.resolve_config(d, **knobs)


@needs_gluon_bwd
@pytest.mark.skipif(not has_ptxas(), reason="Triton's bundled ptxas is missing")
def test_offline_sm90_builds_use_no_local_memory():
    """bf16 builds (about 10 s each, in a child without TRITON_INTERPRET): h64 at d256 and
    d128 touches no local memory and ptxas serialised no wgmma; h64 at d256 issues Sᵀ / dPᵀ
    as 64 x 32 products (32 query columns a warpgroup) and dV / dK as 64 x 128 (half the
    head dim); h64r (the role split) the same with Sᵀ / dPᵀ as whole 64 x 64 products; m64o
    at d128 non-causal (the default there) spills less than m64, m64ao (causal) less than
    m64a and still issues the next Sᵀ before each consumer's dQ."""
    specs = [dict(d=256, causal=True, knobs=dict(variant="h64")),
             dict(d=256, causal=False, knobs=dict(variant="h64r")),
             dict(d=128, causal=False, knobs=dict(variant="h64")),
             dict(d=128, causal=False, knobs=dict(variant="m64o")),
             dict(d=128, causal=False, knobs=dict(variant="m64")),
             dict(d=128, causal=True, knobs=dict(variant="m64ao")),
             dict(d=128, causal=True, knobs=dict(variant="m64a"))]
    rows = run_build(BWD_BUILD, specs, os.path.join(HERE, "gluon_bwd_check.py"))
    roles = rows.pop(1)
    for r in rows[:2] + [roles]:
        assert r["ldl_stl"] == 0 and 0 < r["depbar"] < r["hgmma"], r
    assert {"64x32x16", "64x128x16", "64x64x16"} <= set(rows[0]["shapes"]), rows[0]
    # h64r (role split): Sᵀ and dPᵀ as whole 64 x 64 products, none of 32 columns, and 32 fewer
    # HGMMA (16 k-steps of one N = 64 product per warpgroup instead of two N = 32 ones)
    assert set(roles["shapes"]) == {"64x64x16", "64x128x16"}, roles
    assert roles["hgmma"] == rows[0]["hgmma"] - 32, (roles, rows[0])
    # m64o: none under Triton 3.6 (the device's), 28 against m64's 92 under 3.9
    assert rows[2]["ldl_stl"] < rows[3]["ldl_stl"], (rows[2], rows[3])
    assert 0 < rows[2]["depbar"] < rows[2]["hgmma"], rows[2]
    # m64ao: S_AHEAD with the knob spills less than m64a (3.6: none against 84-120 B)
    assert rows[4]["ldl_stl"] < rows[5]["ldl_stl"], (rows[4], rows[5])
    assert rows[4]["s_before_dq"] == 2, rows[4]
