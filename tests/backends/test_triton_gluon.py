"""triton-fa2's Gluon forward for sm90 (``attnhub_triton._gluon_fwd``, GLUON_NOTES.md).

Gluon has no interpreter, so the CPU checks what can be checked without running it:
- the route: which calls ``ops._use_gluon`` sends to it (the measured table, the switch,
  the cases it cannot take);
- the build: compiled for sm90 with Triton's own ptxas, in a child process without
  ``TRITON_INTERPRET``: wgmma, TMA, ``setmaxnreg``, no local memory;
- the schedule's arithmetic: ``gluon_check.emulate`` replays the kernel's key-block
  ranges, masks and base-2 online softmax on the CPU against the float32 reference (a
  mirror of the kernel's host/device arithmetic, not the kernel).

GPU (``-m gpu``): through the backend, under the flash-attn tolerance rule, with the
forward spied on so the Gluon kernel is the one that ran (the backward is triton-fa2's,
from Gluon's O and LSE).
"""

import json
import os
from types import SimpleNamespace

import pytest
import torch

if not torch.cuda.is_available():  # as test_triton_fa2: the interpreter for the other kernels
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton", reason="triton is not installed: pip install attnhub[triton]")

from attnhub.testing.tolerance import assert_matches_reference, random_inputs  # noqa: E402
from attnhub_triton import ops  # noqa: E402

from gluon_testing import check_bwd_emulation, check_module, has_ptxas, run_build  # noqa: E402
from test_triton_fa2 import BACKEND, make_problem  # noqa: E402  (tests/backends is on sys.path)

GLUON, GLUON_WHY = ops.gluon_module()
needs_gluon = pytest.mark.skipif(GLUON is None, reason=f"no Gluon Hopper module: {GLUON_WHY}")
BF16, F16 = torch.bfloat16, torch.float16
HERE = os.path.dirname(os.path.abspath(ops.__file__))


# -- the route ----------------------------------------------------------------------------------
class _Fake:
    """What ``_use_gluon`` reads of a tensor, on a pretend sm90 device: ``contiguous``
    (B, H, S, D), or (False) a (B, S, H, D) tensor seen as (B, H, S, D), or ("odd") a view
    with every other element of the last dim."""

    def __init__(self, shape, dtype=BF16, contiguous=True, ptr=1 << 20):
        self.shape, self.dtype = torch.Size(shape), dtype
        self.device = torch.device("cuda", 0)
        self._contiguous, self._ptr = contiguous is True, ptr
        b, h, s, d = self.shape
        self._stride = {True: (h * s * d, s * d, d, 1), False: (s * h * d, d, h * d, 1),
                        "odd": (h * s * d * 2, s * d * 2, d * 2, 2)}[contiguous]

    def is_contiguous(self):
        return self._contiguous

    def data_ptr(self):
        return self._ptr

    def dim(self):
        return len(self.shape)

    def element_size(self):
        return torch.empty((), dtype=self.dtype).element_size()

    def stride(self):
        return self._stride


def _route(monkeypatch, d=128, sq=4096, sk=4096, causal=True, dtype=BF16, batch=2, hq=16,
           hk=4, window=(-1, -1), softcap=0.0, scale=0.1, varlen=False, contiguous=True,
           ptr=1 << 20, cap=(9, 0), interpreting=False, backward=False, **env):
    monkeypatch.setattr(ops, "_capability", lambda device: cap)
    monkeypatch.setattr(ops, "_interpreting", lambda: interpreting)
    for key in ("ATTNHUB_TRITON_GLUON", "ATTNHUB_TRITON_GLUON_BWD"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    q = _Fake((batch, hq, sq, d), dtype, contiguous, ptr)
    k = _Fake((batch, hk, sk, d), dtype)
    call = SimpleNamespace(varlen=varlen, seqlen_q=sq, seqlen_k=sk, batch=batch, heads_q=hq,
                           heads_k=hk)
    left, right = window[0], (0 if causal else window[1])
    if backward:
        return ops._use_gluon_bwd(call, q, k, k, q, q, scale, left, right, softcap)
    return ops._use_gluon(call, q, k, k, q, scale, left, right, softcap)


GLUON_BWD, GLUON_BWD_WHY = ops.gluon_bwd_module()
needs_gluon_bwd = pytest.mark.skipif(GLUON_BWD is None,
                                     reason=f"no Gluon Hopper module: {GLUON_BWD_WHY}")


@needs_gluon_bwd
def test_gluon_backward_route_follows_the_measured_table(monkeypatch):
    """On by default for the dense sm90 d64/d128/d256 case from the shortest length timed
    (``GLUON_BWD_MIN_KEYS``), from any length with ATTNHUB_TRITON_GLUON_BWD=1, never with 0;
    the switch and the table are part of the dispatch cache key."""
    assert "ATTNHUB_TRITON_GLUON_BWD" in ops._KERNEL_SWITCHES
    for d in (64, 128, 256):
        for causal in (False, True):
            assert ops.GLUON_BWD_DEFAULT[(d, causal)]
            lo = ops.GLUON_BWD_MIN_KEYS[d]
            assert _route(monkeypatch, d=d, causal=causal, sk=lo, backward=True)
            assert not _route(monkeypatch, d=d, causal=causal, sk=lo - 1, backward=True)
            assert _route(monkeypatch, d=d, causal=causal, sk=lo - 1, backward=True,
                          ATTNHUB_TRITON_GLUON_BWD="1")
            assert not _route(monkeypatch, d=d, causal=causal, backward=True,
                              ATTNHUB_TRITON_GLUON_BWD="0")
    on = dict(backward=True, ATTNHUB_TRITON_GLUON_BWD="1")
    for kw in (dict(d=96), dict(d=192), dict(dtype=torch.float32), dict(softcap=30.0),
               dict(causal=False, window=(64, 16)), dict(varlen=True), dict(contiguous=False),
               dict(ptr=(1 << 20) + 8), dict(cap=(8, 0)), dict(interpreting=True)):
        assert not _route(monkeypatch, **kw, **on), kw
    info = BACKEND.extra_info()["Gluon backward (sm90, contiguous BHSD) by default"]
    assert info == ("d128 causal from 1024 keys, d128 from 1024 keys, "
                    "d256 causal from 2048 keys, d256 from 2048 keys, "
                    "d64 causal from 1024 keys, d64 from 1024 keys")
    assert ops.forward_tag().endswith(";bwd=d64,d64c,d128,d128c,d256,d256c")


@needs_gluon
def test_gluon_route_follows_the_measured_table(monkeypatch):
    for d in (64, 128, 256):
        for causal in (False, True):
            assert ops.GLUON_DEFAULT[(d, causal)]
            lo = ops.min_keys_for(ops.GLUON_MIN_KEYS, d, causal)
            assert _route(monkeypatch, d=d, causal=causal, sk=lo)
            assert not _route(monkeypatch, d=d, causal=causal, sk=lo - 1)  # not timed there
            # the switch: 1 from any length, 0 never
            assert _route(monkeypatch, d=d, causal=causal, sk=lo - 1, ATTNHUB_TRITON_GLUON="1")
            assert not _route(monkeypatch, d=d, causal=causal, ATTNHUB_TRITON_GLUON="0")
    assert "ATTNHUB_TRITON_GLUON" in ops._KERNEL_SWITCHES  # part of the dispatch cache key


@needs_gluon
@pytest.mark.parametrize("why,kw", [
    ("head dim 96", dict(d=96, ATTNHUB_TRITON_GLUON="1")),
    ("float32", dict(dtype=torch.float32)),
    ("sliding window", dict(causal=False, window=(64, 16))),
    ("softcap", dict(softcap=30.0)),
    ("varlen", dict(varlen=True)),
    ("a strided last dim", dict(contiguous="odd", ATTNHUB_TRITON_GLUON="1")),
    ("misaligned", dict(ptr=(1 << 20) + 8)),
    ("grid y past 65535", dict(batch=4097, hq=16)),
    ("not sm90", dict(cap=(8, 0))),
    ("Blackwell", dict(cap=(10, 0))),
    ("Triton's interpreter (Gluon has none)", dict(interpreting=True)),
])
def test_gluon_route_refuses_what_it_cannot_take(why, kw, monkeypatch):
    assert _route(monkeypatch, ATTNHUB_TRITON_GLUON="1") and _route(monkeypatch)
    assert not _route(monkeypatch, **kw), why


@needs_gluon
def test_gluon_route_takes_the_layouts_of_its_table(monkeypatch):
    """(B, S, H, D) memory (flash-attn's layout) was timed alike: it takes the Gluon forward
    while "bs" is in GLUON_LAYOUTS (which the cache tag then carries), and without it only
    with ATTNHUB_TRITON_GLUON=1; a strided last dim never."""
    assert ops.GLUON_LAYOUTS == ("bh", "bs")
    assert _route(monkeypatch, contiguous=False) and _route(monkeypatch)
    assert ";rows=bh+bs" in ops.forward_tag()
    monkeypatch.setattr(ops, "GLUON_LAYOUTS", ("bh",))
    assert not _route(monkeypatch, contiguous=False) and _route(monkeypatch)
    assert _route(monkeypatch, contiguous=False, ATTNHUB_TRITON_GLUON="1")
    assert "rows=" not in ops.forward_tag()
    assert not _route(monkeypatch, contiguous="odd", ATTNHUB_TRITON_GLUON="1")


@needs_gluon
def test_gluon_row_mode_names_the_descriptor_that_addresses_each_layout():
    """``row_mode`` on real tensors: contiguous -> the (B*H, S, D) view, heads adjacent
    ((B, S, H, D), a packed QKV's q/k/v) -> the (B, S, H*D) view, anything else (a strided
    last dim, a sliced head dim, 32-bit, misaligned) -> None; ``gluon_attention_fwd`` says
    what it takes instead of failing inside TMA."""
    mode = GLUON.row_mode
    x = torch.zeros(2, 4, 100, 64, dtype=BF16)
    assert mode(x) == "bh"
    assert mode(torch.zeros(2, 100, 4, 64, dtype=BF16).transpose(1, 2)) == "bs"
    qkv = torch.zeros(2, 100, 3, 4, 64, dtype=F16)
    assert [mode(qkv[:, :, i].transpose(1, 2)) for i in range(3)] == ["bs"] * 3
    padded = torch.zeros(2, 100, 4 * 64 + 4, dtype=BF16)[..., :256].view(2, 100, 4, 64)
    assert mode(padded.transpose(1, 2)) is None  # rows 520 bytes apart: not 16-byte multiples
    assert mode(torch.zeros(2, 4, 100, 128, dtype=BF16)[..., ::2]) is None
    assert mode(torch.zeros(2, 100, 4, 80, dtype=BF16)[..., :64].transpose(1, 2)) is None
    assert mode(torch.zeros(2, 4, 100, 64, dtype=torch.float32)) is None
    assert mode(torch.zeros(2 * 4 * 100 * 64 + 1, dtype=BF16)[1:].view(2, 4, 100, 64)) is None
    with pytest.raises(ValueError, match="heads are adjacent"):
        GLUON._check_rows("k", torch.zeros(2, 4, 100, 128, dtype=BF16)[..., ::2])


def test_gluon_route_is_in_the_cache_tag_and_the_explanation(monkeypatch):
    """Verdicts earned by the lean forward are not reused for the Gluon one (dispatch keys
    on ``cache_tag``), and ``list-backends`` says where it runs, or why it cannot."""
    for key in ops._KERNEL_SWITCHES:
        monkeypatch.delenv(key, raising=False)
    info = BACKEND.extra_info()["Gluon forward (sm90, BHSD or BSHD) by default"]
    if GLUON is not None:
        assert BACKEND.cache_tag() == ops.forward_tag()
        assert BACKEND.cache_tag().startswith(f"gluon-fwd={ops.GLUON_VARIANT}")
        assert ops.min_keys_for(ops.GLUON_MIN_KEYS, 128, False) == 1024  # timed: +26 % at 1k
        assert info == ("d128 causal from 2048 keys, d128 from 1024 keys, "
                        "d256 causal from 1024 keys, d256 from 1024 keys, "
                        "d64 causal from 2048 keys, d64 from 2048 keys")
    monkeypatch.setattr(ops, "_GLUON", {"mod": None, "why": "ImportError: old triton"})
    assert BACKEND.cache_tag() == ""
    assert BACKEND.extra_info()["Gluon forward (sm90, BHSD or BSHD) by default"] == (
        "unavailable (ImportError: old triton)")


def test_gluon_variant_table_picks_by_keys_and_is_in_the_tag(monkeypatch):
    """``GLUON_VARIANTS`` overrides ``GLUON_VARIANT`` from a key count per (d, causal); the
    table is part of the cache tag, so verdicts are not shared across tables."""
    monkeypatch.setattr(ops, "GLUON_VARIANTS", {(64, True): ((2048, "pp-persistent"),
                                                             (8192, "pp3:block_n=64"))})
    assert ops.gluon_variant(64, True, 1024) == ops.GLUON_VARIANT
    assert ops.gluon_variant(64, True, 4096) == "pp-persistent"
    assert ops.gluon_variant(64, True, 16384) == "pp3:block_n=64"
    assert ops.gluon_variant(64, False, 16384) == ops.GLUON_VARIANT
    if GLUON is not None:
        monkeypatch.setattr(ops, "_GLUON", {"mod": GLUON, "why": ""})
        assert ops.forward_tag().startswith(f"gluon-fwd={ops.GLUON_VARIANT};64c>=2048:pp-persistent;"
                                            "64c>=8192:pp3:block_n=64;")


@needs_gluon
def test_gluon_from_keys_table_is_in_the_tag(monkeypatch):
    """Where the Gluon forward starts (``GLUON_MIN_KEYS``, by head dim or by (head dim,
    causal)) decides the kernel of a dispatch bucket, so it is part of the cache tag."""
    monkeypatch.setattr(ops, "_GLUON", {"mod": GLUON, "why": ""})
    tag = ops.forward_tag()
    assert ";from=128n:1024,128:2048,256:1024,64:2048;" in tag
    monkeypatch.setitem(ops.GLUON_MIN_KEYS, (64, True), 4096)
    assert ops.forward_tag() != tag
    assert ops.min_keys_for(ops.GLUON_MIN_KEYS, 64, True) == 4096
    assert ops.min_keys_for(ops.GLUON_MIN_KEYS, 64, False) == 2048
    assert ops.min_keys_for({}, 64, False) == 0


@needs_gluon
def test_gluon_spec_strings_parse_or_say_what_is_wrong():
    assert GLUON.parse_spec("pp3:block_n=64:stages=3") == ("pp3", {"block_n": 64, "stages": 3})
    assert GLUON.parse_spec("pp-persistent") == ("pp-persistent", {})
    for bad, what in (("ppx", "name must be one of"), ("pp:block_n", "key=integer"),
                      ("pp:block_n=x", "key=integer"), ("pp:out=1", "key=integer")):
        with pytest.raises(ValueError, match=what):
            GLUON.parse_spec(bad)
    for (d, _causal), rows in ops.GLUON_VARIANTS.items():  # the shipped table resolves
        for _, spec in rows:
            name, knobs = GLUON.parse_spec(spec)
            GLUON.resolve_config(d, variant=name, **knobs)


def test_gluon_route_needs_the_module_and_a_gpu(monkeypatch):
    monkeypatch.setattr(ops, "_GLUON", {"mod": None, "why": "ImportError: old triton"})
    assert not _route(monkeypatch, ATTNHUB_TRITON_GLUON="1")
    # CPU tensors never (Gluon has no interpreter)
    q = torch.zeros(1, 1, 4096, 64, dtype=BF16)
    call = SimpleNamespace(varlen=False, seqlen_q=4096, seqlen_k=4096, batch=1, heads_q=1)
    monkeypatch.setenv("ATTNHUB_TRITON_GLUON", "1")
    assert not ops._use_gluon(call, q, q, q, q, 0.1, -1, 0, 0.0)


# -- the build ------------------------------------------------------------------------------------
_BUILD = r"""
import json, os, re, subprocess, sys, tempfile
import triton
from attnhub_triton import _gluon_fwd as g
out = []
for spec in json.loads(sys.argv[1]):
    name, knobs = g.parse_spec(spec["variant"])
    c = g.compile_offline(spec["d"], spec["dtype"], spec["causal"], variant=name, **knobs)
    ptx = c.asm["ptx"]
    depth = {}
    for d_, a_, b_ in re.findall(r"\bmax\.f32\s+(%r\d+),\s*([^,]+),\s*([^;]+);", ptx):
        depth[d_] = 1 + max(depth.get(a_.strip(), 0), depth.get(b_.strip(), 0))
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(c.asm["cubin"])
    bindir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    res = subprocess.run([os.path.join(bindir, "cuobjdump"), "-res-usage", f.name],
                         capture_output=True, text=True).stdout
    sass = subprocess.run([os.path.join(bindir, "cuobjdump"), "-sass", f.name],
                          capture_output=True, text=True).stdout
    os.unlink(f.name)
    local = re.findall(r"LOCAL:(\d+)", res)
    out.append(dict(spec, wgmma=ptx.count("wgmma.mma_async"),
                    tma_load=ptx.count("cp.async.bulk.tensor"),
                    atom_add=len(re.findall(r"atom\.global\S*\.add", ptx)),
                    atom_exch=len(re.findall(r"atom\.global\S*\.exch", ptx)),
                    setmaxnreg=ptx.count("setmaxnreg"), local=[int(x) for x in local],
                    ex2=ptx.count("ex2.approx"), poly=ptx.count("0f4B400000") // 2,
                    max_f32=len(depth), max_depth=max(depth.values(), default=0),
                    hgmma=sass.count("HGMMA"), ldl_stl=sass.count("LDL") + sass.count("STL"),
                    shared=int(c.metadata.shared)))
print(json.dumps(out))
"""


@needs_gluon
@pytest.mark.skipif(not has_ptxas(), reason="Triton's bundled ptxas is missing")
def test_gluon_forward_builds_for_sm90_with_wgmma_tma_and_no_local_memory():
    """Every routed (head dim, causal) of the shipped variant and of the simple fallback,
    compiled for sm90 (no GPU): the products are wgmma (HGMMA in the SASS), the loads TMA,
    the partitions' registers set by setmaxnreg, nothing in local memory, and the shared
    memory within the H100's 227 KB."""
    specs = [dict(d=d, causal=c, dtype=dt, variant=var)
             for var in (ops.GLUON_VARIANT, "simple") for d in (64, 128)
             for c in (False, True) for dt in ("bf16", "fp16")]
    rows = run_build(_BUILD, specs)
    for r in rows:
        assert r["wgmma"] > 0 and r["hgmma"] > 0, r
        assert r["tma_load"] > 0 and r["setmaxnreg"] > 0, r
        assert r["ldl_stl"] == 0 and r["local"] and max(r["local"]) == 0, r
        assert r["shared"] <= 227 * 1024, r


@needs_gluon
@pytest.mark.skipif(not has_ptxas(), reason="Triton's bundled ptxas is missing")
def test_gluon_dynamic_grid_builds_with_its_tile_counter():
    """``pp-dynamic`` (the persistent grid taking tiles from an atomic counter) builds for
    sm90 without local memory, with the counter's two atomic adds (a tile drawn, a CTA done
    drawing) and the last CTA's two exchanges that zero the counts for the next launch; the
    static persistent grid, the negative control, has no atomic."""
    specs = [dict(d=d, causal=c, dtype="bf16", variant=var)
             for var in ("pp-dynamic", "pp-persistent") for d in (64, 128) for c in (False, True)]
    for r in run_build(_BUILD, specs):
        assert r["wgmma"] > 0 and r["hgmma"] > 0 and r["tma_load"] > 0, r
        assert r["ldl_stl"] == 0 and r["local"] and max(r["local"]) == 0, r
        assert r["shared"] <= 227 * 1024, r
        n = 2 if r["variant"] == "pp-dynamic" else 0
        assert r["atom_add"] == n and r["atom_exch"] == n, r


def test_gluon_dynamic_knob_is_checked():
    mod = _check_module().load_kernel_module()
    cfg = mod.resolve_config(64, variant="pp-dynamic")
    assert cfg["DYNAMIC"] and cfg["PERSISTENT"] and cfg["Q_BUFS"] == 2
    assert not mod.resolve_config(64, variant="pp-persistent")["DYNAMIC"]
    assert mod.resolve_config(128, variant="pp-persistent", dynamic=1)["DYNAMIC"]
    with pytest.raises(ValueError, match="needs persistent=1"):
        mod.resolve_config(64, variant="pp", dynamic=1)
    # pp3-dynamic: FA3's d64 shape (three 64-row consumers, a 192-row tile) on the same grid
    p3 = mod.resolve_config(64, variant="pp3-dynamic")
    assert p3["DYNAMIC"] and p3["PERSISTENT"] and p3["CONSUMERS"] == 3, p3
    assert (p3["ROWS"], p3["BLOCK_N"], p3["CONSUMER_REGS"]) == (64, 128, 160), p3
    for var in ("pp3", "pp3-dynamic"):  # O of 64 x 256 fp32 does not fit 3 consumers
        with pytest.raises(ValueError, match="consumers=3 at head dim 256"):
            mod.resolve_config(256, variant=var)


@needs_gluon
@pytest.mark.skipif(not has_ptxas(), reason="Triton's bundled ptxas is missing")
def test_gluon_three_consumer_dynamic_grid_builds_at_d64():
    """``pp3-dynamic`` at d64 (bf16): three consumer partitions on the dynamic grid, the tile
    counter's atomics as in pp-dynamic, shared memory within the limit.  (Local memory is not
    asserted: under Triton 3.6, the device's, 0 B causal / 20 B non-causal against pp3's
    152 / 224 B; under 3.9 both spill more, 217 against 190 LDL/STL non-causal.)"""
    specs = [dict(d=64, causal=c, dtype="bf16", variant=var)
             for var in ("pp3-dynamic", "pp3") for c in (False, True)]
    rows = run_build(_BUILD, specs)
    for dyn, static in zip(rows[:2], rows[2:]):
        assert dyn["hgmma"] > 0 and dyn["shared"] <= 227 * 1024, dyn
        assert dyn["atom_add"] == 2 and dyn["atom_exch"] == 2, dyn
        assert static["atom_add"] == 0 and static["hgmma"] > 0, (dyn, static)


@needs_gluon
@pytest.mark.skipif(not has_ptxas(), reason="Triton's bundled ptxas is missing")
def test_gluon_softmax_knobs_build_and_change_what_they_say():
    """``max_tree=1``: the same number of fp32 max instructions as ``pp`` but the longest
    chain of them (the row max before the first exp can issue, then the warp shuffles and
    the running max) at most 8 deep -- ``pp``'s is 33 under Triton 3.6 (the device's), whose
    ``gl.max`` folds a thread's columns in one chain, and 7 under 3.9, whose ``gl.max`` is a
    tree already.  ``exp_poly=8``: one P score in 8 leaves ex2.approx for the polynomial,
    and every exp of ``pp`` is still there once (alpha's stay on ex2).  Neither spills, both
    build for d64 and d128, causal or not."""
    specs = [dict(d=d, causal=c, dtype="bf16", variant=var)
             for var in ("pp", "pp:max_tree=1", "pp:exp_poly=8") for d in (64, 128)
             for c in (False, True)]
    rows = {(r["variant"], r["d"], r["causal"]): r for r in run_build(_BUILD, specs)}
    for (var, d, causal), r in rows.items():
        base = rows[("pp", d, causal)]
        assert r["hgmma"] == base["hgmma"] > 0 and r["ldl_stl"] == 0, r
        assert max(r["local"]) == 0 and r["shared"] == base["shared"], r
        if var == "pp":
            assert r["poly"] == 0 and r["max_depth"] >= rows[("pp:max_tree=1", d, causal)][
                "max_depth"], r
        elif var == "pp:max_tree=1":
            assert r["max_f32"] == base["max_f32"] and r["max_depth"] <= 8, (r, base)
            assert r["ex2"] == base["ex2"] and r["poly"] == 0, r
        else:
            assert r["poly"] > 0 and r["ex2"] + r["poly"] == base["ex2"], (r, base)
            alpha = base["ex2"] - 8 * r["poly"]  # what is left: alpha's exps, 2 a block
            assert 0 < alpha < base["ex2"] // 16, (r, base)
            assert r["max_depth"] == base["max_depth"], r


def test_gluon_softmax_knobs_are_checked():
    mod = _check_module().load_kernel_module()
    cfg = mod.resolve_config(64, variant="pp", exp_poly=8, max_tree=1)
    assert cfg["EXP_POLY"] == 8 and cfg["MAX_TREE"] is True
    assert mod.resolve_config(64)["EXP_POLY"] == 0 and not mod.resolve_config(64)["MAX_TREE"]
    assert mod.parse_spec("pp:exp_poly=8:max_tree=1") == ("pp", {"exp_poly": 8, "max_tree": 1})
    for bad in (3, 32, -1):
        with pytest.raises(ValueError, match="exp_poly="):
            mod.resolve_config(64, exp_poly=bad)


def test_gluon_exp_poly_ptx_computes_exp2():
    """The ``exp_poly`` knob's inline PTX, as text, executed on the CPU
    (``gluon_check.run_exp2_mix_ptx``): in each group of n, n - 1 outputs are ex2 and the last
    is the polynomial, within 7.6e-5 relative from 2^-125 to 1; -inf and anything below -126
    give exactly 0 (masked keys, rows that see no key), NaN stays NaN."""
    chk = _check_module()
    mod = chk.load_kernel_module()
    for n in (2, 8, 16):
        asm = mod.exp2_mix_ptx(n)
        assert asm.count("ex2.approx.ftz.f32") == n - 1
        gen = torch.Generator().manual_seed(n)
        x = torch.linspace(-125.0, 0.0, 4000 * n)[torch.randperm(4000 * n, generator=gen)]
        special = torch.tensor([-float("inf"), float("nan"), -126.5, -1000.0, 0.0, -0.0, 1e-7])
        x[n - 1::n][: len(special)] = special  # on the polynomial's lanes
        y = chk.run_exp2_mix_ptx(asm, n, x)
        ref = torch.exp2(x.double())
        poly = torch.zeros(len(x), dtype=torch.bool)
        poly[n - 1::n] = True
        fin = torch.isfinite(x) & (x >= -125.0)
        rel = (y.double() - ref).abs() / ref
        assert rel[poly & fin].max() < 7.6e-5
        assert rel[poly & fin].max() > 1e-6  # the polynomial ran, not an exact exp2
        assert rel[~poly & fin].max() < 1e-7
        sp = y[n - 1::n][: len(special)]
        assert sp[0] == 0 and torch.isnan(sp[1]) and sp[2] == 0 and sp[3] == 0
        assert abs(float(sp[4]) - 1.0) < 1e-4 and abs(float(sp[6]) - 1.0) < 1e-4
    with pytest.raises(ValueError, match="unknown instruction"):
        chk.run_exp2_mix_ptx(mod.exp2_mix_ptx(2).replace("fma.rn", "fma.rz"), 2, torch.zeros(2))


@pytest.mark.parametrize("causal", [False, True])
def test_gluon_exp_poly_schedule_stays_within_torch_error(causal):
    """The emulated schedule with P's exps through the ``exp_poly=8`` PTX: O within 2x
    torch's own bf16 error against float32, LSE to 1e-4, rows that see no key exact; and
    not the same numbers as without the polynomial (the knob is exercised)."""
    chk = _check_module()
    gen = torch.Generator().manual_seed(81 + causal)
    B, Hq, Hk, Sq, Sk, D = 1, 2, 2, 203, 300, 64
    q, k, v = (torch.randn(B, h, s, D, generator=gen).to(BF16)
               for h, s in ((Hq, Sq), (Hk, Sk), (Hk, Sk)))
    scale = D ** -0.5
    ref_o, ref_lse, sees, allowed = chk.reference_fp32(q, k, v, causal, scale)
    torch_err = (chk.sdpa_lowprec(q, k, v, allowed, scale) - ref_o)[:, :, sees].abs().max()
    o, lse = chk.emulate(q, k, v, causal, scale, exp_poly=8)
    o0, _ = chk.emulate(q, k, v, causal, scale)
    assert not torch.isnan(o).any() and not torch.isnan(lse).any()
    assert (o[:, :, sees] - ref_o[:, :, sees]).abs().max() <= 2 * torch_err
    fin = torch.isfinite(ref_lse)
    assert (lse[fin] - ref_lse[fin]).abs().max() < 1e-4
    assert (o[:, :, ~sees] == 0).all() and (lse[:, :, ~sees] == float("-inf")).all()
    assert not torch.equal(o, o0)


def test_gluon_variant_switch_overrides_the_tables(monkeypatch):
    """ATTNHUB_TRITON_GLUON_VARIANT (A/B runs) wins over ``GLUON_VARIANT`` and
    ``GLUON_VARIANTS`` at every head dim and length, and is part of the cache key."""
    assert "ATTNHUB_TRITON_GLUON_VARIANT" in ops._KERNEL_SWITCHES
    monkeypatch.delenv("ATTNHUB_TRITON_GLUON_VARIANT", raising=False)
    assert ops.gluon_variant(256, True, 4096) == "ws2"  # the table
    monkeypatch.setenv("ATTNHUB_TRITON_GLUON_VARIANT", "pp-dynamic")
    for d, causal, keys in ((64, False, 512), (128, True, 16384), (256, True, 4096)):
        assert ops.gluon_variant(d, causal, keys) == "pp-dynamic"
    assert "gluon_variant=pp-dynamic" in ops.kernel_tag()


@needs_gluon
def test_gluon_variant_switch_names_itself_when_wrong(monkeypatch):
    monkeypatch.setattr(ops, "_GLUON", {"mod": GLUON, "why": ""})
    with pytest.raises(ValueError, match=r"ATTNHUB_TRITON_GLUON_VARIANT='pp-dinamic'.*one of"):
        ops._gluon_spec("pp-dinamic")


# -- the schedule's arithmetic --------------------------------------------------------------------
_check_module = check_module


@pytest.mark.parametrize("B,Hq,Hk,Sq,Sk,D,causal,dtype", [
    (1, 2, 2, 113, 203, 64, False, BF16),
    (1, 2, 2, 113, 203, 64, True, BF16),
    (1, 2, 2, 203, 113, 64, True, F16),  # rows that see no key
    (1, 4, 2, 300, 300, 64, True, BF16),  # GQA, a partial last block
    (1, 2, 2, 1, 300, 64, True, BF16),  # one query row
    (1, 2, 1, 130, 390, 128, True, BF16),  # MQA, Sq < Sk
    (1, 2, 2, 256, 256, 64, False, BF16),  # whole blocks, no mask
])
@pytest.mark.parametrize("tile", [(128, 64, 128), (128, 128, 128), (128, 64, 64),
                                  (192, 64, 128), (192, 64, 64)],
                         ids=["pp-2x64", "simple-128", "pp-n64", "pp3-3x64", "pp3-n64"])
def test_gluon_schedule_matches_the_reference(B, Hq, Hk, Sq, Sk, D, causal, dtype, tile):
    """The kernel's blocks per tile, masked blocks, -inf guard and 16-bit P, replayed on the
    CPU (``gluon_check.emulate``), give the float32 reference: O within bf16/fp16 rounding,
    LSE (natural log) to 1e-4, rows that see no key O = 0 and LSE = -inf, nothing NaN."""
    chk = _check_module()
    gen = torch.Generator().manual_seed(Sq * 7 + Sk + D + causal)
    q = torch.randn(B, Hq, Sq, D, generator=gen).to(dtype)
    k = torch.randn(B, Hk, Sk, D, generator=gen).to(dtype)
    v = torch.randn(B, Hk, Sk, D, generator=gen).to(dtype)
    scale = D ** -0.5
    ref_o, ref_lse, sees, _ = chk.reference_fp32(q, k, v, causal, scale)
    o, lse = chk.emulate(q, k, v, causal, scale, *tile)
    assert not torch.isnan(o).any() and not torch.isnan(lse).any()
    rows = sees[None, None, :].expand(B, Hq, Sq)
    assert (o[rows] - ref_o[rows]).abs().max() < 3e-2
    fin = torch.isfinite(ref_lse)
    assert (lse[fin] - ref_lse[fin]).abs().max() < 1e-4
    assert (o[~rows] == 0).all() and (lse[~rows] == float("-inf")).all()
    if causal and Sq > Sk:
        assert (~sees).any()  # the case really has rows that see no key


@pytest.mark.parametrize("lazy", [1, 8])
@pytest.mark.parametrize("causal", [False, True])
def test_gluon_lazy_rescale_is_exact(lazy, causal):
    """``lazy``: the row maxima (and O's rescale) move only when a row of the partition grew
    by more than ``lazy``; with scores that grow along the keys both arms run, and the
    result is the float32 reference's as closely as the eager schedule's."""
    chk = _check_module()
    gen = torch.Generator().manual_seed(lazy * 10 + causal)
    B, H, S, D = 1, 2, 700, 64
    q = torch.randn(B, H, S, D, generator=gen).to(BF16)
    ramp = torch.linspace(0.2, 3.0, S)[None, None, :, None]  # later keys score higher
    k = (torch.randn(B, H, S, D, generator=gen) * ramp).to(BF16)
    v = torch.randn(B, H, S, D, generator=gen).to(BF16)
    scale = D ** -0.5
    ref_o, ref_lse, sees, _ = chk.reference_fp32(q, k, v, causal, scale)
    eager_o, _ = chk.emulate(q, k, v, causal, scale, 128, 64, 64)
    stats = {}
    o, lse = chk.emulate(q, k, v, causal, scale, 128, 64, 64, lazy, stats)
    assert stats.get("rescaled", 0) > 0 and stats.get("kept", 0) > 0, stats
    rows = sees[None, None, :].expand(B, H, S)
    eager = (eager_o - ref_o).abs()[rows].max()
    assert (o - ref_o).abs()[rows].max() <= 2 * eager + 1e-3
    fin = torch.isfinite(ref_lse)
    assert (lse[fin] - ref_lse[fin]).abs().max() < 1e-4


def test_gluon_lazy_knob_is_checked():
    chk = _check_module()
    mod = chk.load_kernel_module()
    assert mod.resolve_config(64, variant="pp", lazy=8)["LAZY"] == 8
    assert mod.resolve_config(64, variant="pp")["LAZY"] == 0
    for bad in (dict(variant="pp", lazy=17), dict(variant="simple", lazy=8)):
        with pytest.raises(ValueError, match="lazy="):
            mod.resolve_config(64, **bad)


# -- GPU -------------------------------------------------------------------------------------------
def _gpu_cases():
    out = []
    for d in (64, 128):
        for causal in (False, True):
            out.append(dict(d=d, sq=4096, sk=4096, heads="gqa", causal=causal, dtype=BF16))
        out.append(dict(d=d, sq=113, sk=203, heads="mha", batch=2, causal=True, dtype=F16))
        out.append(dict(d=d, sq=203, sk=113, heads="mqa", causal=True, dtype=BF16))
        out.append(dict(d=d, sq=1, sk=4096, heads="mqa", causal=True, dtype=BF16))
        out.append(dict(d=d, sq=1000, sk=2500, heads="gqa", batch=2, dtype=BF16))
    for causal in (False, True):  # d256: the ws2 variant, 64-key blocks
        out.append(dict(d=256, sq=2048, sk=2048, heads="gqa", causal=causal, dtype=BF16))
    out.append(dict(d=256, sq=113, sk=203, heads="mha", batch=2, causal=True, dtype=F16))
    gpu = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                               reason="needs a CUDA GPU")]
    return [pytest.param(kw, marks=gpu, id="d{d}-{sq}x{sk}-{heads}{c}-{dt}".format(
        c="-causal" if kw.get("causal") else "", dt=str(kw["dtype"])[6:], **kw)) for kw in out]


@pytest.fixture
def gluon_calls(monkeypatch):
    calls = []
    if GLUON is not None:
        real = GLUON.gluon_attention_fwd

        def spy(*args, **kwargs):
            calls.append((kwargs.get("variant"), tuple(sorted(
                (k, v) for k, v in kwargs.items() if k not in ("variant", "out", "lse_out",
                                                              "causal", "softmax_scale")))))
            return real(*args, **kwargs)

        monkeypatch.setattr(GLUON, "gluon_attention_fwd", spy)
    return calls


def _gluon_gpu_problem(**kw):
    """``make_problem`` on the GPU, the test skipped unless the Gluon forward can run there
    (sm90 and a Gluon Hopper module)."""
    p = make_problem(device="cuda", **kw)
    if ops._capability(p.device)[0] != 9 or GLUON is None:
        pytest.skip(f"the Gluon forward needs sm90 and a Gluon Hopper module ({GLUON_WHY})")
    return p


@pytest.mark.parametrize("kw", _gpu_cases())
def test_gpu_gluon_forward_through_the_backend(kw, gluon_calls, monkeypatch):
    p = _gluon_gpu_problem(**kw)
    monkeypatch.setenv("ATTNHUB_TRITON_GLUON", "1")  # every length, not only the timed ones
    torch.manual_seed(kw["sq"] + kw["sk"])
    q, k, v = random_inputs(p)
    # the backward (triton-fa2's, from Gluon's O and LSE) on two cases: its builds cost more
    # than the forward's, and it reads nothing of Gluon's but O and LSE, checked every case
    backward = (kw["d"], kw["sq"], kw["sk"]) in ((128, 4096, 4096), (64, 113, 203))
    assert_matches_reference(BACKEND, q, k, v, p, backward=backward)
    name, knobs = GLUON.parse_spec(ops.gluon_variant(kw["d"], bool(kw.get("causal")), kw["sk"]))
    assert gluon_calls and set(gluon_calls) == {(name, tuple(sorted(knobs.items())))}, gluon_calls


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("d,causal,sq,sk,heads,batch", [
    (64, True, 4096, 4096, "gqa", 2),  # more tiles than SMs, unequal
    (128, False, 1000, 2500, "gqa", 2),
    (64, True, 203, 113, "mqa", 1),  # rows that see no key
    (128, True, 113, 203, "mha", 33),  # 132 tiles: one per H100 SM, then the stop
])
def test_gpu_gluon_dynamic_grid_through_the_backend(d, causal, sq, sk, heads, batch,
                                                    gluon_calls, monkeypatch):
    """``pp-dynamic`` (tiles from an atomic counter, zeroed per launch) through the backend,
    forward and backward, called twice (a stale counter would skip tiles the second time)."""
    p = _gluon_gpu_problem(d=d, sq=sq, sk=sk, heads=heads, batch=batch, causal=causal,
                           dtype=BF16)
    monkeypatch.setenv("ATTNHUB_TRITON_GLUON", "1")
    monkeypatch.setenv("ATTNHUB_TRITON_GLUON_VARIANT", "pp-dynamic")
    for seed in (1, 2):
        torch.manual_seed(seed * 1000 + sq + sk + d)
        q, k, v = random_inputs(p)
        assert_matches_reference(BACKEND, q, k, v, p, backward=seed == 1)
    assert gluon_calls and {name for name, _ in gluon_calls} == {"pp-dynamic"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("spec", ["pp:max_tree=1", "pp:max_tree=1:exp_poly=8"])
@pytest.mark.parametrize("d,causal,sq,sk,heads,dtype", [
    (64, True, 2048, 2048, "gqa", BF16),
    (64, True, 203, 113, "mqa", F16),  # rows that see no key, fp16's finer P
    (128, False, 1000, 2500, "gqa", BF16),
])
def test_gpu_gluon_softmax_knobs_through_the_backend(spec, d, causal, sq, sk, heads, dtype,
                                                     gluon_calls, monkeypatch):
    """The softmax knobs (the row max as a tree, one exp2 in 8 by the FMA-pipe polynomial)
    under the flash-attn tolerance rule through the backend, forward and backward."""
    p = _gluon_gpu_problem(d=d, sq=sq, sk=sk, heads=heads, batch=2, causal=causal,
                           dtype=dtype)
    monkeypatch.setenv("ATTNHUB_TRITON_GLUON", "1")
    monkeypatch.setenv("ATTNHUB_TRITON_GLUON_VARIANT", spec)
    torch.manual_seed(sq * 3 + sk + d)
    q, k, v = random_inputs(p)
    assert_matches_reference(BACKEND, q, k, v, p, backward=True)
    name, knobs = GLUON.parse_spec(spec)
    assert gluon_calls and set(gluon_calls) == {(name, tuple(sorted(knobs.items())))}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_gluon_dynamic_grid_replays_in_a_cuda_graph(gluon_calls, monkeypatch):
    """Captured in a CUDA graph (a fresh zeroed tile counter, its memset captured), the
    dynamic grid's forward is right on every replay with new inputs, and eager calls on the
    same stream between replays stay right too."""
    from attnhub.testing.tolerance import compare_forward

    p = _gluon_gpu_problem(d=64, sq=1000, sk=1000, heads="gqa", batch=2, causal=True, dtype=BF16)
    monkeypatch.setenv("ATTNHUB_TRITON_GLUON", "1")
    monkeypatch.setenv("ATTNHUB_TRITON_GLUON_VARIANT", "pp-dynamic")
    torch.manual_seed(7)
    q, k, v = random_inputs(p)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # compile and warm outside the capture
        BACKEND.forward(q, k, v, p)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        o, lse = BACKEND.forward(q, k, v, p)
    for seed in (8, 9):
        torch.manual_seed(seed)
        for dst, src in zip((q, k, v), random_inputs(p)):
            dst.copy_(src)
        o.fill_(float("nan"))
        graph.replay()
        bad = [c for c in compare_forward(o, lse, q, k, v, p) if not c.ok]
        assert not bad, bad
        assert_matches_reference(BACKEND, q, k, v, p)  # eager, between replays
    assert {name for name, _ in gluon_calls} == {"pp-dynamic"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("d,causal,sq,sk,heads", [(128, True, 2048, 2048, "gqa"),
                                                  (64, False, 203, 1000, "mqa"),
                                                  (64, True, 1000, 1000, "packed")])
def test_gpu_bshd_inputs_through_the_gluon_forward(d, causal, sq, sk, heads, gluon_calls,
                                                   monkeypatch):
    """(B, S, H, D) memory and a packed (B, S, 3, H, D) QKV: the Gluon forward over the
    (B, S, H*D) descriptors (right, O in q's layout), another forward when ``GLUON_LAYOUTS``
    holds only the contiguous layout."""
    p = _gluon_gpu_problem(d=d, sq=sq, sk=sk, heads="mha" if heads == "packed" else heads,
                           causal=causal, dtype=BF16)
    torch.manual_seed(sq + sk + d)
    if heads == "packed":
        qkv = torch.randn(p.batch, sq, 3, p.heads_q, d, device="cuda").to(BF16)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    else:
        q, k, v = random_inputs(p, layout="bshd")
    # q in (B, S, H, D) memory; MQA's single K/V head is contiguous either way
    assert GLUON.row_mode(q) == "bs" and {GLUON.row_mode(t) for t in (k, v)} <= {"bh", "bs"}
    monkeypatch.setenv("ATTNHUB_TRITON_GLUON", "1")
    assert_matches_reference(BACKEND, q, k, v, p, backward=(heads == "gqa"))
    assert gluon_calls
    o = BACKEND.forward(q, k, v, p)[0]
    assert o.stride(1) == d and o.stride(3) == 1  # (B, S, H, D) memory, as q's
    monkeypatch.delenv("ATTNHUB_TRITON_GLUON")
    monkeypatch.setattr(ops, "GLUON_LAYOUTS", ("bh",))  # the contiguous layout alone
    gluon_calls.clear()
    BACKEND.forward(q, k, v, p)
    assert not gluon_calls


# -- the Gluon backward (opt-in: ATTNHUB_TRITON_GLUON_BWD=1) --------------------------------------
@pytest.mark.parametrize("B,Hq,Hk,Sq,Sk,D,causal,dtype,block_m", [
    (1, 2, 2, 113, 203, 64, True, BF16, 128),
    (1, 2, 2, 203, 113, 64, True, F16, 64),  # rows that see no key: dQ = 0
    (1, 4, 2, 150, 150, 64, True, BF16, 64),  # GQA: dK, dV summed over the group
    (1, 2, 1, 130, 390, 128, True, BF16, 64),  # MQA, Sq < Sk
])
def test_gluon_backward_schedule_matches_the_reference(B, Hq, Hk, Sq, Sk, D, causal, dtype,
                                                       block_m):
    """The Gluon backward's blocks, masks (folded into the accumulators' start), base-2
    exponent from the LSE, 16-bit P and dS and the dQ sum over key blocks, replayed on the
    CPU (``gluon_bwd_check.emulate``): dQ, dK, dV within 2x torch's own low-precision error
    against a float64 reference; a dropped mask is caught."""
    check_bwd_emulation((B, Hq, Hk, Sq, Sk, D), causal, dtype, seed=Sq * 3 + Sk + D,
                        block_m=block_m)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kw", [
    dict(d=64, sq=1000, sk=1000, heads="gqa", causal=True, dtype=BF16),
    dict(d=64, sq=113, sk=203, heads="mha", dtype=F16),
    dict(d=128, sq=4096, sk=4096, heads="mha", causal=True, dtype=BF16),
    dict(d=128, sq=203, sk=113, heads="mqa", causal=True, dtype=BF16),
    dict(d=128, sq=1, sk=4096, heads="mqa", dtype=BF16),
    dict(d=256, sq=1000, sk=1000, heads="gqa", causal=True, dtype=BF16),  # HSPLIT
    dict(d=256, sq=113, sk=203, heads="mha", dtype=F16),
    dict(d=256, sq=203, sk=113, heads="mqa", causal=True, dtype=BF16),
], ids=lambda kw: "d{d}-{sq}x{sk}-{heads}".format(**kw) + ("-causal" if kw.get("causal") else ""))
def test_gpu_gluon_backward_through_the_backend(kw, monkeypatch):
    p = make_problem(device="cuda", **kw)
    if ops._capability(p.device)[0] != 9 or GLUON_BWD is None:
        pytest.skip(f"the Gluon backward needs sm90 and a Gluon Hopper module ({GLUON_BWD_WHY})")
    monkeypatch.setenv("ATTNHUB_TRITON_GLUON_BWD", "1")
    calls = []
    real = GLUON_BWD.gluon_attention_bwd
    monkeypatch.setattr(GLUON_BWD, "gluon_attention_bwd",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    torch.manual_seed(kw["sq"] * 3 + kw["sk"])
    q, k, v = random_inputs(p)
    assert_matches_reference(BACKEND, q, k, v, p, backward=True)
    assert calls


def test_check_driver_counts_cases_fails_silent_children_and_prints_the_bench(monkeypatch,
                                                                               capsys, tmp_path):
    """The check scripts' shared driver (``_gluon_harness.check_and_bench``) on canned child
    output: a variant whose child reports fewer cases than expected fails even if all it
    reported passed, the bench runs only the variants that passed (with --bench-anyway), and
    the table shows each variant's TFLOP/s and ratio to cuDNN."""
    harness = _check_module().harness
    case = {"status": "PASS", "case": "c", "err_o": 1e-3, "tol_o": 2e-3, "err_torch": 1e-3,
            "err_lse": 1e-6}
    bench = {"S": 2048, "D": 64, "causal": False, "tflops": {"good": 400.0, "cudnn": 420.0},
             "x_cudnn": {"good": 400 / 420, "cudnn": 1.0}, "errors": {"flash": "boom"}}
    calls = []

    def fake_child(script, argv, timeout):
        calls.append(argv)
        if argv[0] == "--child-bench":
            return [bench], "", False
        return ([case, case] if argv[1] == "good" else [case]), "tail", False

    monkeypatch.setattr(harness, "run_child", fake_child)
    args = SimpleNamespace(cases="quick", timeout=1, jobs=2, no_bench=False, bench_anyway=True,
                           rounds=1, bench_timeout=1)
    report = harness.check_and_bench("x.py", args, ["good", "short"], 2, [(2048, 64, False)], {},
                                     str(tmp_path / "r.json"), lambda r: "", lambda: None, "T")
    out = capsys.readouterr().out
    assert report["variant_ok"] == {"good": True, "short": False}
    assert "correctness: 3/4 passed" in out and "short" in out and "did not report" in out
    assert calls[-1][:2] == ["--child-bench", "good"]  # only the variant that passed
    assert "400.0 x0.95" in out and "err" in out
    assert json.load(open(tmp_path / "r.json"))["bench"] == [bench]
