"""The Gluon backward's dQ reduction knobs (``_gluon_bwd``: ``dq_vec``, ``dq_tma``;
GLUON_BWD_NOTES.md, thirty-sixth session).

On the CPU: the knobs' validation, the variant table, the 4-wide layout (a permutation of
wgmma's accumulator layout with 4 adjacent columns per thread), the check script's variant
specs, and -- where Triton's bundled ptxas is present -- an offline sm90 build per knob whose
SASS must hold the dQ reduction it promises (REDG.E.ADD.F32 / F32x2 / F32x4, UTMAREDG).
Nothing here runs the kernel: timing it is the GPU check's job (``gluon_bwd_check.py``).
"""


import pytest

pytest.importorskip("triton", reason="triton is not installed: pip install attnhub[triton]")

from gluon_testing import check_module, gluon_bwd, has_ptxas, kernel_dir, run_build  # noqa: E402

GLUON_BWD, needs_gluon_bwd = gluon_bwd()
HERE = kernel_dir()


@needs_gluon_bwd
def test_default_keeps_two_wide_atomics_and_no_bulk_reduce():
    for d in (64, 128):
        cfg = GLUON_BWD.resolve_config(d)
        assert (cfg["DQ_VEC"], cfg["DQ_TMA"]) == (2, 0), cfg
    assert GLUON_BWD.resolve_config(64, variant="m64v4")["DQ_VEC"] == 4
    assert GLUON_BWD.resolve_config(64, variant="m128v4")["BLOCK_M"] == 128
    assert GLUON_BWD.resolve_config(64, variant="m64v1")["DQ_VEC"] == 1
    assert GLUON_BWD.resolve_config(128, variant="m64", dq_vec=4)["DQ_VEC"] == 4
    tma = GLUON_BWD.resolve_config(128, variant="m64tma")
    assert tma["DQ_TMA"] == 1 and tma["DQ_VEC"] == 2
    # the fp32 staging copies are counted in the shared-memory estimate
    assert tma["smem_estimate"] == GLUON_BWD.resolve_config(128)["smem_estimate"] + 2 * 4 * 64 * 64


@needs_gluon_bwd
@pytest.mark.parametrize("knobs,what", [
    (dict(dq_vec=3), "dq_vec=3"), (dict(dq_vec=0), "dq_vec=0"), (dict(dq_vec=8), "dq_vec=8"),
    (dict(dq_vec=True), "dq_vec=True"), (dict(dq_vec="4"), "dq_vec='4'"),
    (dict(dq_tma=2), "dq_tma=2"), (dict(dq_tma=True), "dq_tma=True"),
    (dict(dq_tma=1, dq_vec=4), "dq_tma=1 with dq_vec=4"),
    (dict(variant="m64tma", dq_vec=2), "dq_tma=1 with dq_vec=2"),
    (dict(variant="m128v4", head_dim=128), "block_m=128"),
])
def test_bad_knobs_raise_a_value_error_naming_them(knobs, what):
    knobs = dict(knobs)
    d = knobs.pop("head_dim", 64)
    with pytest.raises(ValueError, match=what.replace("(", r"\(")):
        GLUON_BWD.resolve_config(d, **knobs)


@needs_gluon_bwd
def test_every_variant_resolves_and_the_launcher_knows_the_new_knobs():
    for name, spec in GLUON_BWD.VARIANTS.items():
        # each builds at one head dim at least (HSPLIT d256, dq_cols d128, the rest d64)
        d = 256 if spec.get("hsplit") else 128 if spec.get("dq_cols") else 64
        GLUON_BWD.resolve_config(d, variant=name)
        assert set(spec) - {"block_m", "stages"} <= set(GLUON_BWD.KNOBS), name
    assert {"dq_vec", "dq_tma"} <= set(GLUON_BWD.KNOBS)


@needs_gluon_bwd
@pytest.mark.parametrize("block_m,n", [(64, 64), (128, 64), (64, 128)])
def test_four_wide_layout_is_the_accumulator_with_two_bits_swapped(block_m, n):
    """_dq_v4_layout: every (row, column) of the tile exactly once, registers 0..3 four
    adjacent columns of one row (one 16-byte atomic), the same warp owning each row as in
    wgmma's layout (warp w: rows 16 w .. 16 w + 15 of each 64), so the change is intra-warp."""
    lay = GLUON_BWD._dq_v4_layout(block_m, n)
    regs, lanes, warps = lay.reg_bases, lay.lane_bases, lay.warp_bases
    assert list(lay.shape) == [block_m, n]
    assert regs[:2] == [[0, 1], [0, 2]]

    def where(bits, bases):
        r = c = 0
        for i, b in enumerate(bases):
            if bits >> i & 1:
                r ^= b[0]
                c ^= b[1]
        return r, c

    seen = set()
    for w in range(1 << len(warps)):
        for ln in range(1 << len(lanes)):
            for rg in range(1 << len(regs)):
                r, c = (a ^ b ^ x for a, b, x in zip(where(rg, regs), where(ln, lanes),
                                                     where(w, warps)))
                assert (r % 64) // 16 == w  # the warp that holds the row in wgmma's layout
                seen.add((r, c))
            quad = [tuple(a ^ b for a, b in zip(where(rg, regs), where(ln, lanes)))
                    for rg in range(4)]
            assert len({r for r, _ in quad}) == 1
            assert [c for _, c in quad] == list(range(quad[0][1], quad[0][1] + 4))
            assert quad[0][1] % 4 == 0
    assert seen == {(r, c) for r in range(block_m) for c in range(n)}


def _check_module():
    return check_module("gluon_bwd_check")


@needs_gluon_bwd
def test_check_script_times_the_new_variants_and_reads_their_sass():
    chk = _check_module()
    assert chk.parse_variant("m64:dq_vec=4") == ("m64", {"dq_vec": 4})
    assert chk.parse_variant("m64:dq_tma=1") == ("m64", {"dq_tma": 1})
    default = chk.DEFAULT_VARIANTS.split(",")
    assert {"m64", "m64v4", "m128v4", "m64tma"} <= set(default)
    assert set(default) <= set(GLUON_BWD.VARIANTS)
    sass = ("REDG.E.ADD.F32.FTZ.RN.STRONG.GPU [R2.64], R5 ;\n"
            "REDG.E.ADD.F32x2.FTZ.RN.STRONG.GPU [R2.64], R4 ;\n"
            "REDG.E.ADD.F32x4.FTZ.RN.STRONG.GPU [R2.64], R8 ;\n"
            "REDG.E.ADD.F32x4.FTZ.RN.STRONG.GPU [R6.64], R12 ;\n"
            "SHFL.BFLY PT, R3, R4, 0x1, 0x1f ;\n@UP0 UTMAREDG.3D.ADD [UR8], [UR12] ;")
    facts, text = chk.dq_sass_facts(sass)
    # (S_AHEAD's order facts, wgmma_order / S_before_dQ / DEPBAR: test_triton_gluon_bwd_ahead.py)
    assert {k: facts[k] for k in ("REDG_by_width", "SHFL", "UTMAREDG")} == {
        "REDG_by_width": {"F32": 1, "F32x2": 1, "F32x4": 2}, "SHFL": 1, "UTMAREDG": 1}
    assert "REDG.F32x4 2" in text


_BUILD = r"""
import json, os, re, subprocess, sys, tempfile
import triton
from attnhub_triton import _gluon_bwd as g
bindir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
out = []
for spec in json.loads(sys.argv[1]):
    c = g.compile_offline(64, "bf16", spec["causal"], aligned=spec["aligned"], **spec["knobs"])
    with tempfile.TemporaryDirectory() as td:
        path = os.path.join(td, "k.cubin")
        open(path, "wb").write(c.asm["cubin"])
        sass = subprocess.run([os.path.join(bindir, "cuobjdump"), "-sass", path],
                              capture_output=True, text=True).stdout
    widths = {}
    for m in re.findall(r"REDG\.E\.ADD\.(F32(?:x[24])?)\b", sass):
        widths[m] = widths.get(m, 0) + 1
    out.append(dict(spec, redg=widths, utmaredg=sass.count("UTMAREDG"),
                    ldl_stl=sass.count("LDL") + sass.count("STL"), hgmma=sass.count("HGMMA")))
print(json.dumps(out))
"""


@needs_gluon_bwd
@pytest.mark.skipif(not has_ptxas(), reason="Triton's bundled ptxas is missing")
def test_offline_sm90_builds_hold_the_promised_dq_reduction():
    """d64 bf16 (a few seconds a build, in a child without TRITON_INTERPRET): the default
    with the launch's 16-byte pointer specialisation has 2-wide atomics (32 static, both
    consumers), without it scalar ones (64); dq_vec=4 has 4-wide (16), dq_vec=1 scalar even
    when aligned, dq_tma=1 a TMA bulk reduce and no REDG; none touches local memory."""
    specs = [dict(knobs={}, aligned=True, causal=False, want={"F32x2": 32}),
             dict(knobs={}, aligned=False, causal=False, want={"F32": 64}),
             dict(knobs=dict(variant="m64v4"), aligned=True, causal=True, want={"F32x4": 16}),
             dict(knobs=dict(variant="m64v1"), aligned=True, causal=False, want={"F32": 64}),
             dict(knobs=dict(variant="m64tma"), aligned=True, causal=False, want={})]
    rows = run_build(_BUILD, specs)
    for r in rows:
        assert r["redg"] == r["want"], r
        assert r["hgmma"] > 0 and r["ldl_stl"] == 0, r
        assert (r["utmaredg"] > 0) == (r["knobs"].get("variant") == "m64tma"), r
