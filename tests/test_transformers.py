"""attn_implementation="attnhub" in Hugging Face transformers, against "eager" on tiny random
models (no downloads): Llama (GQA), Mistral (MQA + sliding window), Gemma-2 (alternating
sliding/full layers, logit softcapping, query_pre_attn_scalar scaling)."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from attnhub.integrations import transformers as hf_attnhub  # noqa: E402

VOCAB, SEQ = 101, 14

FAMILIES = {
    "llama": lambda: transformers.LlamaConfig(num_attention_heads=4, num_key_value_heads=2),
    "mistral": lambda: transformers.MistralConfig(num_attention_heads=4, num_key_value_heads=1,
                                                  sliding_window=4),
    "gemma2": lambda: transformers.Gemma2Config(
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=4,
        attn_logit_softcapping=2.0, query_pre_attn_scalar=7, final_logit_softcapping=None),
}


@pytest.fixture(scope="module", autouse=True)
def _registered():
    hf_attnhub.register()


def _config(family, **overrides):
    cfg = FAMILIES[family]()
    for key, value in dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96,
                           num_hidden_layers=2, max_position_embeddings=128,
                           **overrides).items():
        setattr(cfg, key, value)
    return cfg


def _models(family, **overrides):
    """The same random weights under "eager" and "attnhub" (fresh configs: from_config
    writes the implementation into the config it is given)."""
    torch.manual_seed(0)
    eager = transformers.AutoModelForCausalLM.from_config(_config(family, **overrides),
                                                          attn_implementation="eager")
    ours = transformers.AutoModelForCausalLM.from_config(_config(family, **overrides),
                                                         attn_implementation="attnhub")
    ours.load_state_dict(eager.state_dict())
    assert ours.config._attn_implementation == "attnhub"
    return eager.eval(), ours.eval()


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (3, SEQ), generator=g)
    mask = torch.ones(3, SEQ, dtype=torch.long)
    mask[1, :5] = 0  # left padding, as generate() wants it
    mask[2, :9] = 0
    return ids, mask


def _close(got, want):
    torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_eager(family):
    eager, ours = _models(family)
    ids, mask = _batch()
    with torch.no_grad():
        _close(ours(ids).logits, eager(ids).logits)
        want = eager(ids, attention_mask=mask).logits
        got = ours(ids, attention_mask=mask).logits
        keep = mask.bool()
        _close(got[keep], want[keep])
        # the check above can fail: dropping the mask changes the padded rows' logits
        assert not torch.allclose(eager(ids).logits[keep], want[keep], atol=1e-3)


def test_right_padding_and_all_ones_mask():
    eager, ours = _models("llama")
    ids, _ = _batch(2)
    mask = torch.ones_like(ids)
    mask[0, 10:] = 0
    with torch.no_grad():
        keep = mask.bool()
        _close(ours(ids, attention_mask=mask).logits[keep],
               eager(ids, attention_mask=mask).logits[keep])
        ones = torch.ones_like(ids)
        _close(ours(ids, attention_mask=ones).logits, eager(ids, attention_mask=ones).logits)


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_generate_with_kv_cache_gives_the_same_tokens(family):
    eager, ours = _models(family)
    ids, mask = _batch(3)
    kw = dict(attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        want = eager.generate(ids, **kw)
        got = ours.generate(ids, **kw)
    assert want.shape[1] == SEQ + 10
    assert torch.equal(got, want)


@pytest.mark.parametrize("family", FAMILIES)
def test_backward_gives_the_same_gradients(family):
    eager, ours = _models(family)
    ids, mask = _batch(4)
    # labels only where the predicting position is a real token (logits at padded positions
    # are meaningless in every implementation)
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, 1:].masked_fill_(mask[:, :-1] == 0, -100)
    grads = []
    for model in (eager, ours):
        model.train()
        model.zero_grad()
        model(ids, attention_mask=mask, labels=labels).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name, want in grads[0].items():
        torch.testing.assert_close(grads[1][name], want, rtol=1e-3, atol=1e-5, msg=name)


def test_dropout_in_training_is_refused():
    _, ours = _models("llama", attention_dropout=0.1)
    ids, _ = _batch()
    with torch.no_grad():
        ours(ids)  # eval: transformers passes dropout=0
        ours.train()
        with pytest.raises(ValueError, match=r"dropout=0\.1.*attention_dropout=0\.0"):
            ours(ids)


def test_packed_sequences_by_position_ids():
    eager, ours = _models("mistral")
    ids = torch.randint(0, VOCAB, (1, 13), generator=torch.Generator().manual_seed(5))
    pos = torch.cat([torch.arange(6), torch.arange(4), torch.arange(3)])[None]
    with torch.no_grad():
        # eager builds the block-diagonal mask only without a cache (flash-attn paths always)
        want = eager(ids, position_ids=pos, use_cache=False).logits
        _close(ours(ids, position_ids=pos, use_cache=False).logits, want)
        # the sequences really are separated: as one sequence the logits differ
        assert not torch.allclose(want, eager(ids).logits, atol=1e-3)


def test_flash_attn_kwargs_for_packed_sequences():
    eager, ours = _models("llama")
    ids = torch.randint(0, VOCAB, (1, 11), generator=torch.Generator().manual_seed(6))
    pos = torch.cat([torch.arange(7), torch.arange(4)])[None]
    cu = torch.tensor([0, 7, 11], dtype=torch.int32)
    with torch.no_grad():
        got = ours(ids, position_ids=pos, cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=7,
                   max_length_k=7).logits
        _close(got, eager(ids, position_ids=pos, use_cache=False).logits)


def test_mask_with_holes_takes_the_dense_fallback():
    eager, ours = _models("mistral")
    ids, mask = _batch(7)
    mask[0, 3] = 0  # a hole inside row 0
    mask[0, 8:10] = 0
    keep = mask.bool()
    with torch.no_grad():
        _close(ours(ids, attention_mask=mask).logits[keep],
               eager(ids, attention_mask=mask).logits[keep])


def test_user_built_4d_mask_is_applied_as_given():
    eager, ours = _models("llama")
    ids, _ = _batch(8)
    allowed = torch.ones(SEQ, SEQ, dtype=torch.bool).tril()
    allowed[6:, 2:5] = False  # not a causal/window/padding pattern
    additive = torch.zeros(3, 1, SEQ, SEQ).masked_fill(~allowed, torch.finfo(torch.float32).min)
    with torch.no_grad():
        _close(ours(ids, attention_mask=additive).logits,
               eager(ids, attention_mask=additive).logits)


def test_pinned_backend_and_bad_arguments():
    name = hf_attnhub.register("attnhub-naive-test", backend="naive")
    torch.manual_seed(0)
    eager = transformers.AutoModelForCausalLM.from_config(_config("llama"),
                                                          attn_implementation="eager").eval()
    pinned = transformers.AutoModelForCausalLM.from_config(_config("llama"),
                                                           attn_implementation=name).eval()
    pinned.load_state_dict(eager.state_dict())
    ids, _ = _batch()
    with torch.no_grad():
        _close(pinned(ids).logits, eager(ids).logits)
    with pytest.raises(TypeError, match="backend="):
        hf_attnhub.register("x", backend=3)
    with pytest.raises(ValueError, match="flash"):
        hf_attnhub.register("attnhub-flash")
    with pytest.raises(ValueError, match="sliding_window"):
        hf_attnhub._window(0)


@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "padding-mask"])
def test_compiled_model_fullgraph_no_graph_break_no_recompile(masked):
    eager, ours = _models("gemma2")
    ids, mask = _batch(9)
    args = (ids, mask) if masked else (ids, None)

    def logits(x, m):
        return ours(x, attention_mask=m).logits

    torch._dynamo.reset()
    explained = torch._dynamo.explain(logits)(*args)
    assert explained.graph_break_count == 0, explained.break_reasons
    compiled = torch.compile(logits, fullgraph=True, backend="aot_eager")
    keep = mask.bool() if masked else torch.ones_like(mask, dtype=torch.bool)
    with torch.no_grad():
        _close(compiled(*args)[keep], eager(ids, attention_mask=args[1]).logits[keep])
        other = torch.randint(0, VOCAB, ids.shape, generator=torch.Generator().manual_seed(10))
        with torch._dynamo.config.patch(error_on_recompile=True):
            _close(compiled(other, args[1])[keep],
                   eager(other, attention_mask=args[1]).logits[keep])
    torch._dynamo.reset()


def test_the_checks_can_fail(monkeypatch):
    """Mutations the tests above must catch: a dropped window, a dropped padding mask."""
    eager, ours = _models("mistral")
    ids, mask = _batch(11)
    with torch.no_grad():
        monkeypatch.setattr(hf_attnhub, "_window", lambda w: None)
        assert not torch.allclose(ours(ids).logits, eager(ids).logits, atol=1e-3)
        monkeypatch.undo()
        monkeypatch.setattr(hf_attnhub, "_padded",
                            lambda q, k, v, m, c: hf_attnhub.attnhub.attention(
                                q, k, v, **c).transpose(1, 2))
        keep = mask.bool()
        assert not torch.allclose(ours(ids, attention_mask=mask).logits[keep],
                                  eager(ids, attention_mask=mask).logits[keep], atol=1e-3)


def test_padding_segments_are_cut_once_per_forward(monkeypatch):
    """Every layer gets the same mask: cutting and reading it (a host sync) happens once."""
    _, ours = _models("llama")  # 2 layers
    ids, mask = _batch(12)
    calls = []
    real = hf_attnhub._segments
    monkeypatch.setattr(hf_attnhub, "_segments", lambda m: calls.append(1) or real(m))
    with torch.no_grad():
        ours(ids, attention_mask=mask)
    assert len(calls) == 2  # queries and keys, for both layers
