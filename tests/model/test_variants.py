"""The model family: every variant's full-ranking scorer, GradNorm weight, losses and presets."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from adc_dist.config import PRESETS, USER_REPRS, TrainConfig, from_mapping
from adc_dist.errors import AdcError
from adc_dist.model.network import ADC, domain_losses
from adc_dist.model.shared_grads import shared_layer_grads
from adc_dist.model.sharded_grads import shared_row_grad_norms

VARIANTS = list(itertools.product(USER_REPRS, ("mlp", "mlp+gmf", "gmf"), (False, True)))


def _model(user_repr: str, interaction: str, item_bias: bool, widths=(8, 4), n_items=(13, 5)) -> ADC:
    torch.manual_seed(0)
    m = ADC(9, n_items, 8, widths, dropout=0.3, user_repr=user_repr, interaction=interaction, item_bias=item_bias)
    with torch.no_grad():  # away from the init so every term matters
        for p in m.parameters():
            p.normal_()
    return m


def _batch(m: ADC, C: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    users = [torch.randint(0, 9, (6,), generator=g) for _ in m.n_items]
    items = [torch.randint(0, n, (6, C), generator=g) for n in m.n_items]
    return users, items


@pytest.mark.parametrize("user_repr, interaction, item_bias", VARIANTS)
@pytest.mark.parametrize("chunk_pairs, threads", [(5, 1), (8192, 2)])
def test_score_all_equals_the_per_pair_forward_for_every_variant(user_repr, interaction, item_bias, chunk_pairs,
                                                                threads):
    m = _model(user_repr, interaction, item_bias).eval()
    users = torch.arange(9)
    for k, n in enumerate(m.n_items):
        bu = [users if j == k else users[:1] for j in range(2)]
        bi = [torch.arange(n).repeat(9, 1) if j == k else torch.zeros(1, 1, dtype=torch.long) for j in range(2)]
        with torch.no_grad():
            expected = m(bu, bi)[k]
        got = m.score_all(users, k, chunk_pairs=chunk_pairs, threads=threads)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


def test_each_term_of_the_logit_is_what_the_variant_says():
    """gmf with a specific part: (P[u] + S_k[u]) . Q_k[i] + b_k[i], written out by hand."""
    m = _model("shared+specific", "gmf", True).eval()
    u, it = torch.tensor([2, 7]), torch.tensor([[0, 4], [3, 1]])
    p = m.user_emb.weight[u] + m.user_specific[1].weight[u]
    expected = (p[:, None, :] * m.item_embs[1].weight[it]).sum(-1) + m.item_bias[1][it]
    with torch.no_grad():
        got = m([u[:1], u], [it[:1, :1] % 13, it])[1]
    torch.testing.assert_close(got, expected.detach())
    # mlp+gmf is the paper's MLP logit plus that dot product (same weights, GMF part zeroed).
    mg = _model("shared", "mlp+gmf", False).eval()
    mlp = ADC(9, mg.n_items, 8, (8, 4), interaction="mlp")
    mlp.load_state_dict(mg.state_dict())
    with torch.no_grad():
        dot = (mg.user_emb.weight[u][:, None, :] * mg.item_embs[1].weight[it]).sum(-1)
        torch.testing.assert_close(mg([u[:1], u], [it[:1, :1], it])[1], mlp([u[:1], u], [it[:1, :1], it])[1] + dot)


@pytest.mark.parametrize("user_repr, interaction, item_bias", VARIANTS)
def test_every_parameter_takes_part_in_every_step(user_repr, interaction, item_bias):
    m = _model(user_repr, interaction, item_bias).train()
    users, items = _batch(m)
    (domain_losses(m(users, items), "bpr") + 0.1 * m.embedding_sq_norms(users, items)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())  # DDP needs every parameter used


@pytest.mark.parametrize("user_repr, interaction, item_bias", VARIANTS)
@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_shared_grads_equal_autograd_per_domain_for_every_variant(user_repr, interaction, item_bias, l2):
    m = _model(user_repr, interaction, item_bias).train()
    torch.manual_seed(3)  # dropout masks: the tap and the reference see the same forward
    users, items = _batch(m)
    logits, io = m(users, items, last_layer_io=True)
    losses = domain_losses(logits, "bpr") + l2 * m.embedding_sq_norms(users, items)
    fast = shared_layer_grads(m, losses, io, [it.numel() for it in items], l2)
    W = m.shared_weight
    assert W is (m.user_emb.weight if interaction == "gmf" else m.layers[-1].weight)
    ref = torch.stack([torch.autograd.grad(losses[k], W, retain_graph=True)[0].reshape(-1) for k in range(2)])
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    assert (ref.abs().sum(1) > 0).all()
    untapped = shared_layer_grads(m, losses, None, [], l2)  # the vmapped fallback agrees
    torch.testing.assert_close(untapped, ref, rtol=1e-5, atol=1e-6)
    if interaction == "gmf":  # sharded tables' norms from the batch's rows (one process: no collective)
        norms = shared_row_grad_norms(m, losses, io, 1, l2)
        torch.testing.assert_close(norms.reshape(-1), ref.norm(dim=1), rtol=1e-5, atol=1e-6)
    assert W.grad is None  # nothing accumulated: DDP's hooks would not fire


def test_the_gate_scales_the_shared_vector_per_domain_and_starts_as_shared_plus_specific():
    gated, plain = _model("shared+gated", "gmf", True), _model("shared+specific", "gmf", True)
    users = torch.arange(9)
    with torch.no_grad():
        gated.user_gate.zero_()  # the initial gate: g_k = 1 everywhere
        for k in range(2):  # (the same seed gives the same tables; make sure of it)
            gated.user_specific[k].weight.copy_(plain.user_specific[k].weight)
            gated.item_embs[k].weight.copy_(plain.item_embs[k].weight)
            gated.item_bias[k].copy_(plain.item_bias[k])
        gated.user_emb.weight.copy_(plain.user_emb.weight)
    for k in range(2):
        torch.testing.assert_close(gated.score_all(users, k), plain.score_all(users, k))
    with torch.no_grad():
        gated.user_gate[1] = -50.0  # domain 1 closes its gate: it reads S_1 alone, P no longer matters
    before = gated.score_all(users, 1)
    with torch.no_grad():
        gated.user_emb.weight.mul_(3.0)
    torch.testing.assert_close(gated.score_all(users, 1), before)
    assert not torch.allclose(gated.score_all(users, 0), plain.score_all(users, 0))  # domain 0 still reads P
    assert ADC.from_config(TrainConfig(user_repr="shared+gated", d=8), 9, [13, 5]).user_gate.shape == (2, 8)


def test_bpr_is_the_mean_over_positive_negative_pairs():
    torch.manual_seed(1)
    x = torch.randn(4, 6)
    ref = torch.stack([-F.logsigmoid(x[b, 0] - x[b, j]) for b in range(4) for j in range(1, 6)]).mean()
    torch.testing.assert_close(domain_losses([x], "bpr")[0], ref)
    with pytest.raises(ValueError, match="C >= 2"):
        domain_losses([x[:, :1]], "bpr")


def test_embedding_l2_is_the_batch_mean_of_the_squared_rows():
    m = _model("shared+specific", "gmf", False)
    users, items = _batch(m)
    k = 1
    u, it = users[k], items[k]
    ref = (m.user_emb.weight[u].pow(2).sum(-1).mean() + m.user_specific[k].weight[u].pow(2).sum(-1).mean()
           + m.item_embs[k].weight[it].pow(2).sum(-1).mean())
    torch.testing.assert_close(m.embedding_sq_norms(users, items)[k], ref)
    g = _model("shared+gated", "gmf", False)  # the gated variant regularises what domain k reads
    gate = 2 * torch.sigmoid(g.user_gate[k])
    ref = ((g.user_emb.weight[u] * gate).pow(2).sum(-1).mean() + g.user_specific[k].weight[u].pow(2).sum(-1).mean()
           + g.item_embs[k].weight[it].pow(2).sum(-1).mean())
    torch.testing.assert_close(g.embedding_sq_norms(users, items)[k], ref)


def test_paper_preset_is_design_section_2_and_explicit_keys_win():
    paper = from_mapping({"preset": "paper"})
    assert (paper.d, paper.negatives, paper.loss, paper.user_repr, paper.interaction, paper.item_bias, paper.l2,
            paper.num_hidden_layers, paper.hidden_shape, paper.lr, paper.init_std, paper.batch_size) == (
        100, 5, "bce", "shared", "mlp", False, 0.0, 2, "halving", 1e-3, 0.01, 1024)
    assert from_mapping({"preset": "paper", "d": 32}).d == 32
    m = ADC.from_config(paper, 10, [7, 8])
    assert m.user_specific is None and m.item_bias is None and m.has_mlp and not m.has_gmf
    assert set(PRESETS["paper"]) <= set(TrainConfig().to_dict())
    with pytest.raises(AdcError, match="unknown preset 'papr'"):
        from_mapping({"preset": "papr"})


@pytest.mark.parametrize("key, value", [("user_repr", "specific"), ("interaction", "dot"), ("loss", "mse"),
                                        ("l2", -1.0)])
def test_bad_variant_values_are_one_line_config_errors(key, value):
    with pytest.raises(AdcError, match=key):
        from_mapping({key: value})


def test_gmf_model_has_no_mlp_and_bf16_autocast_runs_both_paths():
    cfg = TrainConfig(interaction="gmf", user_repr="shared+specific", item_bias=True, d=8).validate()
    m = ADC.from_config(cfg, 9, [13, 5]).eval()
    assert len(m.layers) == 0 and len(m.heads) == 0 and m.shared_weight is m.user_emb.weight
    ref = m.score_all(torch.arange(9), 0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s = m.score_all(torch.arange(9), 0)
        logits = m([torch.arange(9)] * 2, [torch.zeros(9, 2, dtype=torch.long)] * 2)
    assert s.dtype == torch.bfloat16 and torch.isfinite(domain_losses(logits, "bpr")).all()
    torch.testing.assert_close(s.float(), ref, rtol=0.05, atol=0.05 * ref.abs().max().item())
