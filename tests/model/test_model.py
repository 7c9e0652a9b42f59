"""ADC model: shapes, the factorised full-ranking scorer, losses, autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adc_dist.config import TrainConfig
from adc_dist.errors import AdcError
from adc_dist.model.network import ADC, domain_losses, hidden_widths


def _model(n_items=(13, 5, 40), d=8, widths=(8, 4), seed=0, dropout=0.0) -> ADC:
    torch.manual_seed(seed)
    m = ADC(9, n_items, d, widths, dropout=dropout)
    with torch.no_grad():  # larger than the init so the scores are far from constant
        for p in m.parameters():
            p.normal_()
    return m


def test_hidden_widths_halving_and_constant():
    assert hidden_widths(100, 3, "halving") == [100, 50, 25]
    assert hidden_widths(100, 2, "constant") == [200, 200]
    with pytest.raises(AdcError, match="hidden_shape"):
        hidden_widths(100, 2, "pyramid")
    with pytest.raises(AdcError, match="too small"):
        hidden_widths(4, 4, "halving")


def test_from_config_builds_the_configured_layers():
    cfg = TrainConfig(d=16, num_hidden_layers=3, hidden_shape="halving", interaction="mlp").validate()
    m = ADC.from_config(cfg, n_users=10, n_items=[7, 8])
    assert [lin.out_features for lin in m.layers] == [16, 8, 4]
    assert m.layers[0].in_features == 32
    assert m.shared_weight is m.layers[-1].weight
    assert m.num_domains == 2


def test_forward_returns_one_logit_per_pair_and_uses_every_parameter():
    m = _model()
    users = [torch.tensor([0, 3]), torch.tensor([1]), torch.tensor([2, 4, 8])]
    items = [torch.randint(0, 13, (2, 6)), torch.randint(0, 5, (1, 3)), torch.randint(0, 40, (3, 1))]
    logits = m(users, items)
    assert [tuple(x.shape) for x in logits] == [(2, 6), (1, 3), (3, 1)]
    domain_losses(logits).sum().backward()
    # DDP needs every parameter to take part in every step: every head ran.
    assert all(p.grad is not None for p in m.parameters())


def test_forward_rejects_a_batch_that_does_not_match_the_domains():
    m = _model()
    with pytest.raises(ValueError, match="one users and one items tensor per domain"):
        m([torch.tensor([0])], [torch.tensor([[0]])])
    with pytest.raises(ValueError, match="domain 1"):
        m([torch.tensor([0])] * 3, [torch.tensor([[0]]), torch.tensor([0]), torch.tensor([[0]])])


@pytest.mark.parametrize("widths", [(8,), (8, 4), (16, 16, 16)])
@pytest.mark.parametrize("chunk_pairs, threads", [(3, 1), (7, 1), (64, 1), (8192, 1), (3, 2), (7, 3), (64, 2)])
def test_score_all_equals_the_per_pair_forward_for_every_item(widths, chunk_pairs, threads):
    m = _model(widths=widths, dropout=0.5)
    m.train()  # score_all never applies dropout, so compare with the eval-mode forward
    users = torch.arange(9)
    for k, n in enumerate(m.n_items):
        m.eval()
        batch_users = [users if j == k else users[:1] for j in range(3)]
        batch_items = [torch.arange(n).repeat(9, 1) if j == k else torch.zeros(1, 1, dtype=torch.long)
                       for j in range(3)]
        with torch.no_grad():
            expected = m(batch_users, batch_items)[k]  # [9, n]
        m.train()
        got = m.score_all(users, k, chunk_pairs=chunk_pairs, threads=threads)
        assert got.shape == (9, n)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


def test_score_all_works_for_a_single_domain_and_an_empty_user_list():
    m = _model(n_items=(6,))
    assert m.score_all(torch.arange(3), 0).shape == (3, 6)
    assert m.score_all(torch.zeros(0, dtype=torch.long), 0).shape == (0, 6)
    with pytest.raises(ValueError, match="out of range"):
        m.score_all(torch.arange(3), 1)


def test_domain_losses_are_the_mean_bce_with_column_zero_positive():
    torch.manual_seed(1)
    logits = [torch.randn(4, 6), torch.randn(2, 3)]
    got = domain_losses(logits)
    for k, x in enumerate(logits):
        labels = torch.zeros_like(x)
        labels[:, 0] = 1
        torch.testing.assert_close(got[k], F.binary_cross_entropy_with_logits(x, labels))


def test_bf16_autocast_runs_both_paths_close_to_float32():
    m = _model().eval()
    users = torch.arange(9)
    ref = m.score_all(users, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s = m.score_all(users, 2)
        logits = m([users] * 3, [torch.zeros(9, 2, dtype=torch.long)] * 3)
        losses = domain_losses(logits)
    assert s.dtype == torch.bfloat16 and logits[0].dtype == torch.bfloat16
    assert losses.dtype == torch.float32 and torch.isfinite(losses).all()
    torch.testing.assert_close(s.float(), ref, rtol=0.05, atol=0.05 * ref.abs().max().item())
