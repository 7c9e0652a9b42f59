"""zero_init: S_k and Q_k start at zero, P alone is drawn (docs/model.md, "Zero-initialised tables")."""

from __future__ import annotations

import pytest
import torch

from adc_dist.config import USER_REPRS, TrainConfig, from_mapping
from adc_dist.model.network import ADC, domain_losses, zero_init_tables
from adc_dist.train.loop import fit, prepare_task
from adc_dist.train.reporting import LocalReporter


@pytest.mark.parametrize("user_repr", USER_REPRS)
@pytest.mark.parametrize("interaction", ["gmf", "mlp+gmf"])
def test_a_zero_initialised_model_scores_every_item_by_its_bias_alone(user_repr, interaction):
    torch.manual_seed(0)
    m = ADC(9, (13, 5), 8, (8, 4), init_std=0.1, user_repr=user_repr, interaction=interaction, item_bias=True,
            zero_init=True).eval()
    tables = m.tables()
    assert set(tables) - zero_init_tables(2, user_repr != "shared") == {"user"}
    assert all(not t.weight.any() for n, t in tables.items() if n != "user")
    assert 0.07 < float(m.user_emb.weight.detach().std()) < 0.13  # P keeps its N(0, 0.1^2) draw
    if interaction == "gmf":  # no MLP: the logit is p . q + b = b, whoever the user is
        with torch.no_grad():
            for b in m.item_bias:
                b.normal_()
        for k, n in enumerate(m.n_items):
            torch.testing.assert_close(m.score_all(torch.arange(9), k), m.item_bias[k].detach().expand(9, n))


def test_zero_init_changes_nothing_but_the_zeroed_tables():
    """The same seed draws the same P with and without zero_init (P is drawn first either way),
    and without it every table is N(0, init_std^2), as the paper preset wants."""
    models = {}
    for zero in (False, True):
        torch.manual_seed(5)
        models[zero] = ADC(50, (40, 30), 16, init_std=0.1, user_repr="shared+specific", interaction="gmf",
                           item_bias=True, zero_init=zero)
    torch.testing.assert_close(models[True].user_emb.weight, models[False].user_emb.weight, rtol=0, atol=0)
    for n, t in models[False].tables().items():
        assert 0.08 < float(t.weight.detach().std()) < 0.12, n
    assert from_mapping({"preset": "paper"}).zero_init is False and TrainConfig().zero_init is True


def test_zero_tables_get_gradients_once_p_has_moved_them():
    """From zero, Q_k learns in the first step (its gradient is sigma * P[u]) and S_k in the second
    (its gradient is sigma * (q_pos - q_neg)): zero is not a saddle the model stays on."""
    torch.manual_seed(0)
    m = ADC(9, (13, 5), 8, init_std=0.1, user_repr="shared+specific", interaction="gmf", item_bias=True,
            zero_init=True)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    users = [torch.tensor([0, 1, 2]), torch.tensor([3, 4])]
    items = [torch.tensor([[0, 5], [1, 6], [2, 7]]), torch.tensor([[0, 1], [2, 3]])]
    for step in range(2):
        opt.zero_grad()
        (domain_losses(m(users, items), "bpr") + 1e-3 * m.embedding_sq_norms(users, items)).sum().backward()
        opt.step()
        if step == 0:
            assert m.item_embs[0].weight[[0, 1, 2, 5, 6, 7]].abs().min(1).values.gt(0).all()
            assert not any(s.weight.any() for s in m.user_specific)
    assert m.user_specific[0].weight[:3].abs().sum(1).gt(0).all()
    assert m.user_specific[1].weight[3:5].abs().sum(1).gt(0).all()
    # Rows no batch touched: never a gradient, so Adam leaves them exactly at zero.
    assert not m.user_specific[0].weight[3:].any() and not m.user_specific[1].weight[:3].any()
    assert not m.item_embs[0].weight[[3, 4, 8, 9, 10, 11, 12]].any()


def test_on_a_cut_domain_users_without_its_train_items_are_ranked_by_p_and_the_bias(data_root, tmp_path):
    """amazon-book-music with Music cut to 10 %: after training, a user with no Music train item
    has S_music[u] = 0 exactly, so their Music score is P[u] . q_i + b_i (no random s_u . q_i)."""
    cfg = from_mapping({"task": "amazon-book-music", "subsample_domain": "music", "subsample_frac": 0.1,
                        "d": 16, "batch_size": 4096, "epochs": 1, "eval_users": 200, "topk": [10]})
    task = prepare_task(cfg)
    rep = LocalReporter(tmp_path, quiet=True)
    fit(cfg, rep, task=task)
    state = rep.load_checkpoint()["model"]  # the one epoch's parameters
    k = task.domains.index("music")
    seen = torch.zeros(task.n_users, dtype=torch.bool)
    seen[torch.as_tensor(task.train[k].users)] = True
    S = state[f"user_specific.{k}.weight"]
    assert 500 < int((~seen).sum()) and not S[~seen].any()  # most users: no Music train item, S row still 0
    # Users with one moved (all but the few whose only positive came in the first step, when
    # Q was still zero and so was their gradient).
    assert S[seen].abs().sum(1).gt(0).float().mean() > 0.9
    book = task.domains.index("book")
    in_book = torch.zeros(task.n_users, dtype=torch.bool)
    in_book[torch.as_tensor(task.train[book].users)] = True
    assert state[f"user_specific.{book}.weight"][in_book].abs().sum(1).gt(0).float().mean() > 0.9
