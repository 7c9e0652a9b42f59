"""Neural baselines: NeuMF per domain, and a DTCDR-style cross-domain NeuMF.

NeuMF (He et al., WWW 2017, "Neural Collaborative Filtering") fuses a GMF branch
(p^g_u ⊙ q^g_i, its own embeddings) and an MLP tower on [p^m_u ; q^m_i] (its own
embeddings) in one output layer: ``y = h_g . (p^g ⊙ q^g) + h_m . MLP([p^m; q^m]) + c``,
trained with BCE on sampled negatives (4 per positive in the paper). ``neumf`` fits one
independent model per domain: the single-domain neural baseline, no transfer.

DTCDR (Zhu et al., CIKM 2019, "DTCDR: A Framework for Dual-Target Cross-Domain
Recommendation") builds each domain's NeuMF from embeddings in which the common users'
embeddings of all domains are *combined* (concatenation, max- or average-pooling) into a
shared user embedding that every domain's MLP reads, while the rest stays per domain.
``dtcdr`` here is that with average pooling, trained jointly on all domains (the paper
pre-trains the single-domain embeddings first; this is one joint stage): domain k's MLP
reads mean_j p^{m,j}_u (shared), its GMF branch p^{g,k}_u (specific). It thus shares and
separates user factors, like ADC's ``shared+specific`` variants, with nothing balanced.

Both plug into ``fit_factor_model`` (domain_loss, score_fn) and rank all items with the
factorised first layer of ``adc_dist.model.pair_scorer``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from adc_dist.compare.baselines.mf import fit_factor_model, pair_loss
from adc_dist.data.task_data import TaskData
from adc_dist.model.pair_scorer import default_chunk_pairs, score_pairs


class NeuralCF(nn.Module):
    """NeuMF for K domains; ``pool_users``: the MLP's user is the mean over all domains' tables (DTCDR)."""

    def __init__(self, n_users: int, n_items: Sequence[int], d: int, init_std: float = 0.01,
                 pool_users: bool = False):
        super().__init__()
        K, self.d, self.pool_users = len(n_items), d, pool_users
        emb = lambda n: nn.Embedding(n, d)  # noqa: E731
        self.user_g = nn.ModuleList(emb(n_users) for _ in range(K))
        self.user_m = nn.ModuleList(emb(n_users) for _ in range(K))
        self.item_g = nn.ModuleList(emb(n) for n in n_items)
        self.item_m = nn.ModuleList(emb(n) for n in n_items)
        widths = [d, max(1, d // 2)]  # NeuMF's halving tower
        self.tower = nn.ModuleList(nn.ModuleList([nn.Linear(2 * d, widths[0]), nn.Linear(widths[0], widths[1])])
                                   for _ in range(K))
        self.h_g = nn.ModuleList(nn.Linear(d, 1, bias=False) for _ in range(K))
        self.h_m = nn.ModuleList(nn.Linear(widths[1], 1) for _ in range(K))
        for e in [*self.user_g, *self.user_m, *self.item_g, *self.item_m]:
            nn.init.normal_(e.weight, std=init_std)

    def _mlp_user(self, users: torch.Tensor, k: int) -> torch.Tensor:
        if self.pool_users:  # DTCDR's average pooling of the user's embeddings of every domain
            return torch.stack([t(users) for t in self.user_m]).mean(0)
        return self.user_m[k](users)

    def _halves(self, k: int, pm: torch.Tensor, qm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The first tower layer split into its user half [.., w_1] and item half (with the bias)."""
        first = self.tower[k][0]
        return F.linear(pm, first.weight[:, :self.d]), F.linear(qm, first.weight[:, self.d:], first.bias)

    def domain_loss(self, k: int, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                    loss: str, reg: float) -> torch.Tensor:
        items = torch.cat([pos[:, None], neg], dim=1)  # B x (1 + C)
        pg, qg = self.user_g[k](users), self.item_g[k](items)
        pm, qm = self._mlp_user(users, k), self.item_m[k](items)
        a, b = self._halves(k, pm, qm)
        z = F.relu(self.tower[k][1](F.relu(a[:, None, :] + b)))
        s = self.h_g[k](pg[:, None, :] * qg).squeeze(-1) + self.h_m[k](z).squeeze(-1)
        penalty = [pg, qg, pm, qm] if reg else []
        return pair_loss(s, loss, reg, penalty)

    @torch.no_grad()
    def score_fn(self, users: torch.Tensor, k: int) -> torch.Tensor:
        """Every item of domain k for each user: the GMF part is one matmul, the MLP runs on the pair scorer."""
        a, b = self._halves(k, self._mlp_user(users, k), self.item_m[k].weight)
        second, h = self.tower[k][1], self.h_m[k]
        out = score_pairs(a, b, [(second.weight.t(), second.bias)], h.weight[0], h.bias,
                          chunk_pairs=default_chunk_pairs(a.device))
        pg = self.user_g[k](users) * self.h_g[k].weight[0]
        return out.addmm_(pg, self.item_g[k].weight.t())


class PerDomain:
    """``score_fn(users, k)``: the scores of domain k's own single-domain model."""

    def __init__(self, models: list[nn.Module]):
        self.models = models

    def score_fn(self, users: torch.Tensor, k: int) -> torch.Tensor:
        return self.models[k].score_fn(users, 0)


def _neural(pool_users: bool):
    return lambda n_users, n_items, d, init_std: NeuralCF(n_users, n_items, d, init_std, pool_users)


def fit_neumf(task: TaskData, *, seed: int = 0, log=None, negatives: int = 4, init_std: float = 0.01,
              **params) -> PerDomain:
    """One NeuMF per domain on ``task.select([domain])``, BCE with 4 negatives (the NeuMF paper)."""
    models = []
    for dom in task.domains:
        if log:
            log(f" neumf: domain {dom}")
        models.append(fit_factor_model(task.select([dom]), loss="bce", negatives=negatives, seed=seed, log=log,
                                       init_std=init_std, make_model=_neural(False), **params).model)
    return PerDomain(models)


def fit_dtcdr(task: TaskData, *, seed: int = 0, log=None, negatives: int = 4, init_std: float = 0.01,
              **params) -> NeuralCF:
    """The DTCDR-style model on all domains at once (sum of the per-domain BCE losses)."""
    return fit_factor_model(task, loss="bce", negatives=negatives, seed=seed, log=log, init_std=init_std,
                            make_model=_neural(True), **params).model
