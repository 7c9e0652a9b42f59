"""Matrix factorisation on implicit feedback, and its training loop (shared by BPR-MF and CMF).

``FactorModel`` has one user table P (n_users x d) and one item table Q_k plus an item
bias b_k per domain: ``score(u, i, k) = p_u . q_i + b_k[i]``. With one domain it is
BPR-MF (Rendle et al., UAI 2009); with K domains sharing P it is collective matrix
factorisation (Singh & Gordon, KDD 2008) on implicit feedback — the linear counterpart
of ADC's shared user table.

``fit_factor_model`` trains it with mini-batches of positives, fresh negatives every
epoch from ``NegativeSampler`` (exact: items the user has no train interaction with),
and keeps the parameters of the epoch with the best validation metric (mean over the
domains), evaluated with the same ``adc_dist.evaluate.evaluate`` as ADC.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from adc_dist.data.task_data import TaskData

LOSSES = ("bpr", "bce")


class FactorModel(nn.Module):
    """P: n_users x d (shared by all domains); Q_k: n_items[k] x d and b_k per domain."""

    def __init__(self, n_users: int, n_items: Sequence[int], d: int, init_std: float = 0.1):
        super().__init__()
        self.user = nn.Embedding(n_users, d)
        self.items = nn.ModuleList(nn.Embedding(n, d) for n in n_items)
        self.bias = nn.ParameterList(nn.Parameter(torch.zeros(n)) for n in n_items)
        for emb in [self.user, *self.items]:
            nn.init.normal_(emb.weight, std=init_std)

    def domain_loss(self, k: int, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                    loss: str, reg: float) -> torch.Tensor:
        """Mean loss of domain k on positives ``pos[B]`` and negatives ``neg[B, C]``.

        ``bpr``: -log sigmoid(s_pos - s_neg) over the C pairs; ``bce``: binary cross-entropy
        with label 1 for the positive and 0 for each negative. ``reg`` is an L2 penalty on
        the embeddings in the batch (the usual BPR regulariser).
        """
        p = self.user(users)  # B x d
        items = torch.cat([pos[:, None], neg], dim=1)  # B x (1 + C)
        q = self.items[k](items)  # B x (1 + C) x d
        s = (p[:, None, :] * q).sum(-1) + self.bias[k][items]
        return pair_loss(s, loss, reg, [p, q])

    @torch.no_grad()
    def score_fn(self, users: torch.Tensor, k: int) -> torch.Tensor:
        """Scores of every item of domain k: Tensor[U, n_items[k]]."""
        return self.user(users) @ self.items[k].weight.T + self.bias[k]


def pair_loss(s: torch.Tensor, loss: str, reg: float, embeddings: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean loss of scores ``s[B, 1 + C]`` (column 0 the positive) plus ``reg`` times the
    sum over ``embeddings`` (the batch's rows) of their mean squared norm."""
    if loss == "bpr":
        out = -F.logsigmoid(s[:, :1] - s[:, 1:]).mean()
    else:
        labels = torch.zeros_like(s)
        labels[:, 0] = 1.0
        out = F.binary_cross_entropy_with_logits(s, labels)
    if reg:
        out = out + reg * sum(e.pow(2).sum(-1).mean() for e in embeddings)
    return out


@dataclass
class FitResult:
    model: nn.Module  # a FactorModel, or what make_model built (domain_loss and score_fn)
    best_epoch: int
    best_valid: dict[str, float]  # EvalResult.flat("valid") at the best epoch
    history: pd.DataFrame  # one row per evaluated epoch: epoch, loss, valid_*


def fit_factor_model(
    task: TaskData,
    *,
    d: int = 64,
    lr: float = 5e-3,
    reg: float = 1e-4,
    loss: str = "bpr",
    negatives: int = 1,
    batch_size: int = 4096,
    epochs: int = 60,
    eval_every: int = 5,
    patience: int = 3,
    metric: tuple[str, int] = ("ndcg", 10),
    ks: Sequence[int] = (10, 20),
    seed: int = 0,
    init_std: float = 0.1,
    log: Callable[[str], None] | None = None,
    make_model: Callable[..., nn.Module] = FactorModel,
) -> FitResult:
    """Train a FactorModel on all domains of ``task``; keep the best validation epoch.

    One epoch visits every train positive of every domain once: the largest domain is
    cut into batches of ``batch_size`` and every other domain into the same number of
    (smaller) batches, and each step minimises the sum of the per-domain mean losses.
    ``patience`` counts evaluations without improvement (0: run all epochs). ``make_model``
    ``(n_users, n_items, d, init_std)`` builds any model with FactorModel's ``domain_loss``
    and ``score_fn`` (the neural baselines of adc_dist.compare.baselines.neural_cf).
    """
    from adc_dist.data.sampling import NegativeSampler
    from adc_dist.train.evaluate import evaluate

    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = make_model(task.n_users, task.n_items, d, init_std)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    samplers = [NegativeSampler(task, k) for k in range(task.num_domains)]
    n_pos = [len(t) for t in task.train]
    steps = max(1, math.ceil(max(n_pos) / batch_size))
    key = f"valid_{metric[0]}{metric[1]}_mean"

    best, best_state, best_epoch, bad, rows = -math.inf, None, 0, 0, []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        batches = []
        for k, inter in enumerate(task.train):
            perm = rng.permutation(n_pos[k])
            users = inter.users[perm]
            neg = samplers[k].sample(users, negatives, rng)
            batches.append((torch.from_numpy(users), torch.from_numpy(inter.items[perm]), torch.from_numpy(neg),
                            math.ceil(n_pos[k] / steps)))
        total = 0.0
        for s in range(steps):
            step_loss = 0.0
            for k, (u, i, j, b) in enumerate(batches):
                sl = slice(s * b, (s + 1) * b)
                if u[sl].numel():
                    step_loss = step_loss + model.domain_loss(k, u[sl], i[sl], j[sl], loss, reg)
            opt.zero_grad(set_to_none=True)
            step_loss.backward()
            opt.step()
            total += float(step_loss.detach())
        if epoch % eval_every and epoch != epochs:
            continue
        model.eval()
        flat = evaluate(model.score_fn, task, "valid", list(ks)).flat("valid")
        rows.append({"epoch": epoch, "loss": total / steps, "epoch_time_s": time.perf_counter() - t0, **flat})
        if log:
            log(f"  epoch {epoch:3d} loss {total / steps:.4f} {key} {flat[key]:.4f}")
        if flat[key] > best:
            best, best_state, best_epoch, bad = flat[key], copy.deepcopy(model.state_dict()), epoch, 0
        else:
            bad += 1
            if patience and bad >= patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    best_valid = next(r for r in rows if r["epoch"] == best_epoch)
    return FitResult(model, best_epoch, {k: v for k, v in best_valid.items() if k.startswith("valid_")},
                     pd.DataFrame(rows))
