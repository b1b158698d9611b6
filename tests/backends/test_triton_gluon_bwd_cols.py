"""The Gluon backward's ``dq_cols`` knob (variants ``m64c`` / ``m64co``: at d128 each consumer
warpgroup adds its column half of dQ every block, as fa3_bwd.cu does, instead of the whole
dQ every other block), dQ in one product (``m64o1`` at d128, ``h64w`` at d256: no 64-column
chunks retired one after the other) and the tools that narrow S_AHEAD's GPU failure down (``ahead_chunk=-1``,
the check script's ``ahead`` cases and per-block failure maps); GLUON_BWD_NOTES.md,
"Fortieth session".

On the CPU: the knobs' validation, the case list, the failure map, and -- where Triton's
bundled ptxas is present -- offline sm90 builds.  Running the kernels is the GPU check's job
(``gluon_bwd_check.py``, ``benchmarks/device_s40.sh``).
"""

import os

import pytest

pytest.importorskip("triton", reason="triton is not installed: pip install attnhub[triton]")

import torch  # noqa: E402

from gluon_testing import (BWD_BUILD, check_module, gluon_bwd, has_ptxas,  # noqa: E402
                           kernel_dir, run_build)

GLUON_BWD, needs_gluon_bwd = gluon_bwd()
HERE = kernel_dir()


@needs_gluon_bwd
def test_dq_cols_is_off_by_default_and_on_in_its_variants():
    for d in (64, 128, 256):
        assert GLUON_BWD.resolve_config(d)["DQ_SHARE"] == 0
    for name in ("m64c", "m64co"):
        cfg = GLUON_BWD.resolve_config(128, variant=name)
        assert (cfg["DQ_SHARE"], cfg["DQ_SPLIT"], cfg["S_AHEAD"]) == (1, 2, 0), cfg
    assert GLUON_BWD.resolve_config(128, variant="m64co")["KV_OPAQUE"] == 1
    assert GLUON_BWD.resolve_config(128, dq_cols=1)["DQ_SHARE"] == 1
    # the same shared memory: dS stays double-buffered, both halves read by both warpgroups
    assert (GLUON_BWD.resolve_config(128, variant="m64co")["smem_estimate"]
            == GLUON_BWD.resolve_config(128)["smem_estimate"])
    assert "dq_cols" in GLUON_BWD.KNOBS


@needs_gluon_bwd
@pytest.mark.parametrize("d,knobs,what", [
    (64, dict(variant="m64c"), "dq_cols=1 needs dq_split=2"),       # one 64-column chunk
    (128, dict(variant="m64c", dq_split=1), "dq_cols=1 needs dq_split=2"),
    (128, dict(variant="m64a", dq_cols=1), "s_ahead=0"),
    (128, dict(dq_cols=2), "dq_cols=2"),
    (128, dict(dq_cols=True), "dq_cols=True"),
    (256, dict(variant="h64", dq_cols=1), "dq_cols=1 does not apply with hsplit=1"),
    (128, dict(variant="m64a", ahead_chunk=-3), r"ahead_chunk=-3 not in \(-2, -1, 0, 1\)"),
])
def test_bad_dq_cols_and_ahead_chunk_raise_a_value_error_naming_them(d, knobs, what):
    with pytest.raises(ValueError, match=what):
        GLUON_BWD.resolve_config(d, **knobs)


@needs_gluon_bwd
def test_negative_ahead_chunks_are_the_diagnostic_placements():
    for d in (64, 128):
        for chunk in (-1, -2):
            cfg = GLUON_BWD.resolve_config(d, variant="m64a", ahead_chunk=chunk)
            assert cfg["AHEAD_CHUNK"] == chunk
    assert GLUON_BWD.resolve_config(64, variant="m64a2", ahead_chunk=-2)["S_AHEAD"] == 2


@needs_gluon_bwd
@pytest.mark.skipif(not has_ptxas(), reason="Triton's bundled ptxas is not installed")
def test_offline_sm90_build_issues_the_next_s_before_the_branch():
    """ahead_chunk=-2 at d64 (bf16, causal): the next Sᵀ is issued once, before the turn's
    branch (8 fewer HGMMA than m64a, which issues it in both arms), still directly before
    each consumer's dQ wgmmas, no local memory and no serialised wgmma."""
    specs = [dict(d=64, causal=True, knobs=dict(variant="m64a", ahead_chunk=-2)),
             dict(d=64, causal=True, knobs=dict(variant="m64a"))]
    two, m64a = run_build(BWD_BUILD, specs, os.path.join(HERE, "gluon_bwd_check.py"))
    assert two["ldl_stl"] == 0 and 0 < two["depbar"] < two["hgmma"], two
    assert two["hgmma"] == m64a["hgmma"] - 8, (two, m64a)
    assert two["s_before_dq"] == 2, two


@needs_gluon_bwd
def test_ahead_cases_start_from_one_block_and_failure_maps_name_the_blocks():
    chk = check_module("gluon_bwd_check")
    cases = chk.case_list("ahead")
    # one head, one 128-key CTA, n_iter = Sq / 64 = 1, 2, 3, 4 first
    assert [c[3] for c in cases[:4]] == [64, 128, 192, 256]
    assert all(c[:3] == (1, 1, 1) and c[4] == 128 for c in cases[:4])
    assert any(c[6] for c in cases) and any(c[5] == 128 for c in cases)
    ref = torch.zeros(2, 3, 200, 8)
    got = ref.clone()
    got[1, 2, 130, 5] = 0.5      # row 130: block 2
    got[0, 0, 199, 0] = float("nan")
    assert chk.bad_blocks(got, ref, 0.1) == ["0.0:3(inf)", "1.2:2(0.5)"]
    assert chk.bad_blocks(got, ref, 1.0) == ["0.0:3(inf)"]   # NaN is always bad
    assert chk.bad_blocks(ref, ref, 0.0) == []
    line = chk._case_details({"status": "FAIL", "err_dq": 1.0, "tol_dq": 0.1, "err_dk": 0.0,
                              "tol_dk": 0.1, "err_dv": 0.0, "tol_dv": 0.1,
                              "bad_dq": ["0.0:1(1)"]})
    assert "bad dq blocks 0.0:1(1)" in line


@needs_gluon_bwd
@pytest.mark.skipif(not has_ptxas(), reason="Triton's bundled ptxas is not installed")
def test_offline_sm90_builds_split_dq_by_columns():
    """bf16 builds (about 10 s each): m64co at d128 spills no more than m64o (Triton 3.6, the
    device's: neither spills; 3.9: 16 against 28 LDL/STL), ptxas serialised no wgmma, and it
    issues 16 fewer HGMMA than m64o (one 64-column dQ chunk a block per warpgroup in one code
    path, not two chunks in the turn)."""
    specs = [dict(d=128, causal=False, knobs=dict(variant="m64co")),
             dict(d=128, causal=False, knobs=dict(variant="m64o"))]
    rows = run_build(BWD_BUILD, specs, os.path.join(HERE, "gluon_bwd_check.py"))
    cols, turn = rows
    assert cols["ldl_stl"] <= turn["ldl_stl"], (cols, turn)
    assert 0 < cols["depbar"] < cols["hgmma"], cols
    assert cols["hgmma"] == turn["hgmma"] - 16, (cols, turn)


@needs_gluon_bwd
@pytest.mark.skipif(not has_ptxas(), reason="Triton's bundled ptxas is not installed")
def test_offline_sm90_builds_issue_dq_as_one_product():
    """h64w at d256: each warpgroup's 64 x 128 dQ as one product issued with dV and dK, no
    local memory, 8 fewer HGMMA than h64 (N = 128 k-steps instead of two N = 64 runs) and
    fewer waits; m64o1 at d128: the turn's dQ as one 64 x 128 product, 16 fewer HGMMA than
    m64o (local memory: none for either under Triton 3.6, the device's; 38 against 22 LDL/STL
    causal under 3.9, so not asserted)."""
    specs = [dict(d=256, causal=True, knobs=dict(variant="h64w")),
             dict(d=256, causal=True, knobs=dict(variant="h64")),
             dict(d=128, causal=True, knobs=dict(variant="m64o1")),
             dict(d=128, causal=True, knobs=dict(variant="m64o"))]
    rows = run_build(BWD_BUILD, specs, os.path.join(HERE, "gluon_bwd_check.py"))
    wide, h64, one, m64o = rows
    assert wide["ldl_stl"] == 0 and wide["hgmma"] == h64["hgmma"] - 8, (wide, h64)
    assert 0 < wide["depbar"] < h64["depbar"], (wide, h64)
    assert "64x128x16" in wide["shapes"] and "64x64x16" not in wide["shapes"], wide
    assert one["hgmma"] == m64o["hgmma"] - 16, (one, m64o)


@needs_gluon_bwd
def test_one_product_variants_resolve():
    assert GLUON_BWD.resolve_config(128, variant="m64o1")["DQ_SPLIT"] == 1
    assert GLUON_BWD.resolve_config(128, variant="m64o1")["KV_OPAQUE"] == 1
    cfg = GLUON_BWD.resolve_config(256, variant="h64w")
    assert (cfg["HSPLIT"], cfg["DQ_SPLIT"]) == (1, 1)
    assert cfg["smem_estimate"] == GLUON_BWD.resolve_config(256)["smem_estimate"]


@needs_gluon_bwd
def test_dq_rows_shares_a_128_row_block_by_rows():
    for name in ("m128r", "m128ro"):
        cfg = GLUON_BWD.resolve_config(64, variant=name)
        assert (cfg["DQ_SHARE"], cfg["BLOCK_M"], cfg["DQ_SPLIT"]) == (2, 128, 1), cfg
    assert GLUON_BWD.resolve_config(64, variant="m128")["DQ_SHARE"] == 0
    for d, knobs, what in ((64, dict(dq_rows=1), "dq_rows=1 needs block_m=128"),
                           (128, dict(variant="m128r"), "block_m=128 needs head dim 64"),
                           (64, dict(variant="m128r", dq_tma=1), "dq_tma=0"),
                           (64, dict(variant="m128r", dq_rows=2), "dq_rows=2"),
                           (256, dict(variant="h64", dq_rows=1), "does not apply with hsplit")):
        with pytest.raises(ValueError, match=what):
            GLUON_BWD.resolve_config(d, **knobs)


@needs_gluon_bwd
@pytest.mark.skipif(not has_ptxas(), reason="Triton's bundled ptxas is not installed")
def test_offline_sm90_build_shares_dq_by_rows():
    """m128ro at d64 (bf16, non-causal): 16 fewer HGMMA than m128 (each warpgroup's 64-row dQ
    in one code path, not the turn's 128 rows), no serialised wgmma.  (Local memory: none
    under Triton 3.6, the device's, non-causal; 112 B causal; not asserted.)"""
    specs = [dict(d=64, causal=False, knobs=dict(variant="m128ro")),
             dict(d=64, causal=False, knobs=dict(variant="m128"))]
    rows_, turn = run_build(BWD_BUILD, specs, os.path.join(HERE, "gluon_bwd_check.py"))
    assert rows_["hgmma"] == turn["hgmma"] - 16, (rows_, turn)
    assert 0 < rows_["depbar"] < rows_["hgmma"], rows_
