"""The Gluon backward's S_AHEAD knob (``_gluon_bwd``: ``s_ahead``, ``ahead_chunk``; variants
``m64a`` and ``m64a2``; GLUON_BWD_NOTES.md, "Thirty-sixth session (later): S_AHEAD").

On the CPU: the knobs' validation, the check script's default list and its SASS order
reader, the rotated loop's row bookkeeping (``gluon_bwd_check.ahead_rows``, which the
emulation replays) and -- where Triton's bundled ptxas is present -- offline sm90 builds
whose SASS must issue the next block's Sᵀ before this block's dQ wgmmas (and the default
must not).  Nothing here runs the kernel: timing it is the GPU check's job.
"""

import os

import pytest

pytest.importorskip("triton", reason="triton is not installed: pip install attnhub[triton]")

from gluon_testing import (BWD_BUILD, check_module, gluon_bwd, has_ptxas, kernel_dir,  # noqa: E402
                           run_build)

GLUON_BWD, needs_gluon_bwd = gluon_bwd()
HERE = kernel_dir()


def _check_module():
    return check_module("gluon_bwd_check")


@needs_gluon_bwd
def test_default_issues_nothing_ahead_and_the_variants_do():
    for d in (64, 128):
        cfg = GLUON_BWD.resolve_config(d)
        assert (cfg["S_AHEAD"], cfg["AHEAD_CHUNK"]) == (0, 0), cfg
    assert GLUON_BWD.resolve_config(64, variant="m64a")["S_AHEAD"] == 1
    assert GLUON_BWD.resolve_config(64, variant="m64a2")["S_AHEAD"] == 2
    # d128 has two dQ chunks: by default the next Sᵀ goes before the second
    assert GLUON_BWD.resolve_config(128, variant="m64a")["AHEAD_CHUNK"] == 1
    assert GLUON_BWD.resolve_config(128, variant="m64a", ahead_chunk=0)["AHEAD_CHUNK"] == 0
    assert GLUON_BWD.resolve_config(64, variant="m64a")["AHEAD_CHUNK"] == 0
    # no extra shared memory: the next products live in registers
    assert (GLUON_BWD.resolve_config(128, variant="m64a")["smem_estimate"]
            == GLUON_BWD.resolve_config(128)["smem_estimate"])
    assert {"s_ahead", "ahead_chunk"} <= set(GLUON_BWD.KNOBS)


@needs_gluon_bwd
@pytest.mark.parametrize("knobs,what", [
    (dict(s_ahead=3), "s_ahead=3"), (dict(s_ahead=-1), "s_ahead=-1"),
    (dict(s_ahead=True), "s_ahead=True"), (dict(s_ahead="1"), "s_ahead='1'"),
    (dict(variant="m64a2", head_dim=128), "s_ahead=2 needs head dim 64"),
    (dict(s_ahead=2, head_dim=128), "s_ahead=2 needs head dim 64"),
    (dict(variant="m64a", ahead_chunk=1), "ahead_chunk=1 not in"),       # d64: one chunk
    (dict(variant="m64a", ahead_chunk=2, head_dim=128), "ahead_chunk=2 not in"),
    (dict(variant="m64a", ahead_chunk=True, head_dim=128), "ahead_chunk=True"),
    (dict(ahead_chunk=0), "ahead_chunk=0 with s_ahead=0"),
])
def test_bad_ahead_knobs_raise_a_value_error_naming_them(knobs, what):
    knobs = dict(knobs)
    d = knobs.pop("head_dim", 64)
    with pytest.raises(ValueError, match=what.replace("(", r"\(")):
        GLUON_BWD.resolve_config(d, **knobs)


@needs_gluon_bwd
def test_check_script_times_the_ahead_variants_and_reads_the_order():
    chk = _check_module()
    default = chk.DEFAULT_VARIANTS.split(",")
    assert default[0] == "m64" and {"m64a", "m64a2"} <= set(default)
    assert set(default) <= set(GLUON_BWD.VARIANTS)
    assert chk.parse_variant("m64a:ahead_chunk=0") == ("m64a", {"ahead_chunk": 0})
    sass = "\n".join([
        "HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4], R24, gsb0 ;",          # Sᵀ
        "HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4], R24, gsb0 ;",
        "HGMMA.64x64x16.F32.BF16 R88, R152, gdesc[UR8].tnspB, R88 ;",   # dV (RS)
        "HGMMA.64x64x16.F32.BF16 R24, gdesc[UR12], R24, gsb0 ;",        # next Sᵀ
        "HGMMA.64x64x16.F32.BF16 R180, gdesc[UR52].tnspB, RZ, !UPT ;",  # dQ
        "REDG.E.ADD.F32x2.FTZ.RN.STRONG.GPU desc[UR30][R22.64], R184 ;",
        "LDL.64 R18, [R1+0x38] ;",
        "WARPGROUP.DEPBAR.LE gsb0, 0x0 ;"])
    assert chk.wgmma_order(sass) == "SRSQAL"
    facts, text = chk.dq_sass_facts(sass)
    assert facts["S_before_dQ"] == 1 and facts["DEPBAR"] == 1
    assert "S_before_dQ 1" in text and "SERIALISED" not in text


@needs_gluon_bwd
@pytest.mark.parametrize("s_ahead", [1, 2])
@pytest.mark.parametrize("causal,sq,sk,group", [(False, 200, 200, 1), (True, 150, 150, 4),
                                                 (True, 203, 113, 1), (True, 1, 300, 2)])
def test_rotated_bookkeeping_starts_every_product_from_its_own_block(s_ahead, causal, sq, sk,
                                                                     group):
    """ahead_rows traces the registers of _consumer_loop_ahead; every product must start from
    the LSE / mask / Δ rows of the block it works on (the emulation uses these rows)."""
    chk = _check_module()
    bm = 64
    n_mb = -(-sq // bm)
    for n0 in range(0, sk, 128):
        m_first = max(n0 - (sk - sq), 0) // bm if causal else 0
        rows = chk.ahead_rows(0, m_first, n_mb, group, s_ahead)
        assert [r["block"] for r in rows] == [(g, mb) for g in range(group)
                                              for mb in range(m_first, n_mb)]
        for r in rows:
            assert r["lse"] == r["delta"] == r["block"], r
            assert r["mask_mb"] == r["block"][1], r
        stale = chk.ahead_rows(0, m_first, n_mb, group, s_ahead, control="stale")
        assert len(rows) == 1 or any(r["lse"] != r["block"] for r in stale)




@needs_gluon_bwd
@pytest.mark.skipif(not has_ptxas(), reason="Triton's bundled ptxas is missing")
def test_offline_sm90_builds_issue_the_next_s_before_the_dq_wgmmas():
    """d64 bf16 (a few seconds a build, in a child without TRITON_INTERPRET): in each
    consumer's dQ turn, m64a / m64a2 issue an SS wgmma without a transposed B (the next Sᵀ)
    right before the dQ wgmmas (.tnspB), the default never does; none touches local memory
    and ptxas serialised no wgmma (fewer warpgroup waits than HGMMAs)."""
    specs = [dict(d=64, causal=False, knobs={}, want=0),
             dict(d=64, causal=True, knobs=dict(variant="m64a"), want=2),
             dict(d=64, causal=False, knobs=dict(variant="m64a2"), want=2)]
    rows = run_build(BWD_BUILD, specs, os.path.join(HERE, "gluon_bwd_check.py"))
    for r in rows:
        assert r["s_before_dq"] == r["want"], r
        assert r["ldl_stl"] == 0 and 0 < r["depbar"] < r["hgmma"], r
        if r["want"]:
            assert "RSQA" in r["order"], r  # dV/dK, then the next Sᵀ, dQ, atomics
        else:
            assert "RQA" in r["order"] and "SQ" not in r["order"], r
