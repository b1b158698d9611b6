"""An independent, deliberately simple statement of the contract's semantics.

Full S×S matrices in float64, K/V repeated per query head, the mask written from the issue's
formula: query i sees key j iff (causal: j <= i + Sk - Sq) and
(window (l, r): i + Sk - Sq - l <= j <= i + Sk - Sq + r, -1 unbounded).  Only for tests.
"""

import torch


def oracle(q, k, v, causal=False, scale=None, window=None, softcap=None):
    """q (B, Hq, Sq, D), k (B, Hk, Sk, D), v (B, Hk, Sk, Dv) -> O float64, LSE float64."""
    q, k, v = q.double(), k.double(), v.double()
    B, Hq, Sq, D = q.shape
    Hk, Sk = k.shape[1], k.shape[2]
    k = k.repeat_interleave(Hq // Hk, dim=1)
    v = v.repeat_interleave(Hq // Hk, dim=1)
    scale = D ** -0.5 if scale is None else scale
    s = (q @ k.transpose(-1, -2)) * scale
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    allowed = torch.ones(Sq, Sk, dtype=torch.bool)
    for i in range(Sq):
        for j in range(Sk):
            ok = True
            if causal and not j <= i + Sk - Sq:
                ok = False
            if window is not None:
                left, right = window
                if left >= 0 and j < i + Sk - Sq - left:
                    ok = False
                if right >= 0 and j > i + Sk - Sq + right:
                    ok = False
            allowed[i, j] = ok
    s = s.masked_fill(~allowed.to(s.device), float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)
    return p @ v, lse
