"""The public FP8 path end to end on a GPU: quantize_fp8 → attnhub.attention (auto-dispatch)
→ bf16 output, RMSE against an fp64 reference, and which backend dispatch chose.
Outlier-channel inputs as in the FA3 paper's test (2 channels of Q and K × 10)."""

import torch

import attnhub


def main() -> None:
    torch.manual_seed(0)
    for d, causal in ((128, False), (256, True)):
        b, h, s = 2, 8, 2048
        q, k, v = (torch.randn(b, h, s, d, device="cuda", dtype=torch.float64) for _ in range(3))
        q[..., :2] *= 10
        k[..., :2] *= 10
        scale = 1 / (10 * d ** 0.5)
        want = attnhub.attention(q, k, v, causal=causal, scale=scale, backend="naive")
        bf = [t.to(torch.bfloat16) for t in (q, k, v)]
        for hadamard in (True, False):
            f8 = attnhub.quantize_fp8(*bf, hadamard=hadamard)
            kw = dict(causal=causal, scale=scale, q_descale=f8.q_descale,
                      k_descale=f8.k_descale, v_descale=f8.v_descale)
            out = attnhub.attention(f8.q, f8.k, f8.v, **kw)
            chosen = attnhub.explain(f8.q, f8.k, f8.v, **kw).chosen
            rmse = (out.double() - want).square().mean().sqrt().item()
            print(f"fp8 d={d} causal={causal} hadamard={hadamard}: dtype={out.dtype} "
                  f"chosen={chosen} rmse={rmse:.3e} finite={bool(out.isfinite().all())}")
        ref16 = attnhub.attention(*bf, causal=causal, scale=scale)
        print(f"bf16 d={d}: rmse={(ref16.double() - want).square().mean().sqrt().item():.3e}")


if __name__ == "__main__":
    main()
