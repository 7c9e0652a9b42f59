"""The ADC network: a shared user table, one item table per domain, a shared MLP, K heads.

ADC is "Adaptive Deep Learning of Cross-Domain Loss in Collaborative Filtering"
(Rafailidis & Weiss, arXiv 1907.01645). Its full text is not public here; the
architecture below is the reconstruction of ``../shared/DESIGN.md`` section 2:

    p_u  = P[u]                     (n_users x d, shared by all K domains: the transfer)
    q_i  = Q_k[i]                   (n_items[k] x d, one table per domain)
    z_0  = [p_u ; q_i]              (2d)
    z_l  = dropout(relu(W_l z_{l-1} + b_l)),  l = 1..L   (shared by all domains)
    y_hat = sigmoid(h_k . z_L + c_k)                      (one head per domain)

Training scores (user, item) pairs (:meth:`ADC.forward`); evaluation ranks every item
of a domain for a block of users (:meth:`ADC.score_all`) with the factorised first
layer ``W_1 [p; q] = W_1u p + W_1i q``, which removes the first layer's cost per pair.
The per-domain losses (:func:`domain_losses`) are combined by a balancer
(``adc_dist.balancing``); GradNorm needs :attr:`ADC.shared_weight` (W_L).

Nothing here fixes a dtype or a device: the module follows ``.to()`` and runs under
``torch.autocast`` (bf16 on GPU) unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adc_dist.errors import AdcError
from adc_dist.model.pair_scorer import default_chunk_pairs, default_threads, score_pairs

if TYPE_CHECKING:  # only for the type of from_config's argument
    from adc_dist.config import TrainConfig


def hidden_widths(d: int, num_layers: int, shape: str) -> list[int]:
    """Widths of the shared hidden layers; the MLP's input is [p_u ; q_i], 2d wide.

    ``"halving"``: ``[d, d // 2, d // 4, ...]`` (2d -> d -> d/2 ...);
    ``"constant"``: ``[2d] * num_layers``.
    """
    if d < 1 or num_layers < 1:
        raise AdcError(f"hidden_widths needs d >= 1 and num_layers >= 1 (got d={d}, num_layers={num_layers})")
    if shape == "halving":
        widths = [d // 2**i for i in range(num_layers)]
        if widths[-1] < 1:
            raise AdcError(f"d={d} is too small to halve over {num_layers} hidden layers")
        return widths
    if shape == "constant":
        return [2 * d] * num_layers
    raise AdcError(f"unknown hidden_shape {shape!r}; expected 'halving' or 'constant'")


class ADC(nn.Module):
    """ADC for K >= 1 domains.

    Args:
        n_users: users, shared id space over all domains.
        n_items: items per domain, ``n_items[k]`` for domain k (K = len(n_items)).
        d: embedding size of users and items.
        widths: widths of the L >= 1 shared hidden layers (see :func:`hidden_widths`).
        dropout: dropout after every hidden layer (training only).
        init_std: std of the normal init of the embedding tables.
    """

    def __init__(self, n_users: int, n_items: Sequence[int], d: int, widths: Sequence[int],
                 dropout: float = 0.0, init_std: float = 0.01) -> None:
        super().__init__()
        n_items = [int(n) for n in n_items]
        widths = [int(w) for w in widths]
        if n_users < 1 or not n_items or min(n_items) < 1:
            raise AdcError(f"ADC needs n_users >= 1 and >= 1 domain with >= 1 item "
                           f"(got n_users={n_users}, n_items={n_items})")
        if d < 1 or not widths or min(widths) < 1:
            raise AdcError(f"ADC needs d >= 1 and >= 1 hidden layer of width >= 1 (got d={d}, widths={widths})")
        self.d = int(d)
        self.n_items = tuple(n_items)
        self.widths = tuple(widths)

        self.user_emb = nn.Embedding(n_users, d)
        self.item_embs = nn.ModuleList(nn.Embedding(n, d) for n in n_items)
        ins = [2 * d] + widths[:-1]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(ins, widths))
        self.heads = nn.ModuleList(nn.Linear(widths[-1], 1) for _ in n_items)
        self.dropout = nn.Dropout(dropout)

        # Embeddings: small normal (NCF's choice); layers: Xavier with zero bias, so the
        # initial logits are near 0 and every domain starts at BCE ~ log 2.
        nn.init.normal_(self.user_emb.weight, std=init_std)
        for emb in self.item_embs:
            nn.init.normal_(emb.weight, std=init_std)
        for lin in [*self.layers, *self.heads]:
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    @classmethod
    def from_config(cls, cfg: "TrainConfig", n_users: int, n_items: Sequence[int]) -> "ADC":
        """The model a :class:`~adc_dist.config.TrainConfig` describes."""
        widths = hidden_widths(cfg.d, cfg.num_hidden_layers, cfg.hidden_shape)
        return cls(n_users, n_items, cfg.d, widths, dropout=cfg.dropout, init_std=cfg.init_std)

    @property
    def num_domains(self) -> int:
        return len(self.n_items)

    @property
    def shared_weight(self) -> nn.Parameter:
        """W_L, the weight of the last shared hidden layer (GradNorm's W), [widths[-1], in]."""
        return self.layers[-1].weight

    # ---------------------------------------------------------------- training path
    def forward(self, users: Sequence[Tensor], items: Sequence[Tensor], *, last_layer_io: bool = False
                ) -> list[Tensor] | tuple[list[Tensor], tuple[Tensor, Tensor]]:
        """Logits of (user, item) pairs, per domain.

        Args:
            users: K LongTensors, ``users[k]`` of shape [B_k].
            items: K LongTensors, ``items[k]`` of shape [B_k, C_k] (items of domain k;
                in training column 0 is the positive, columns 1.. the rho negatives).
            last_layer_io: also return the input [N, w_{L-1}] and the pre-activation
                [N, w_L] of the last shared layer (N = sum_k B_k C_k, domains in order),
                from which GradNorm forms dL_k/dW_L in one matmul per domain. Needs
                L >= 2 hidden layers (with one, the layer's input [p; q] is never built).
        Returns:
            K tensors, logits ``[B_k, C_k]`` (and the pair above if asked).

        All domains go through the shared MLP in one pass (one matmul per layer instead
        of K), and every head runs on every call: DDP needs every parameter used every
        step.
        """
        self._check_batch(users, items)
        # The first layer factorises here too: W_1u p_u once per user (not once per
        # candidate) plus W_1i q_i per candidate, about 40 % fewer FLOPs than on [p; q].
        first, d = self.layers[0], self.d
        h = []
        for k, (u, it) in enumerate(zip(users, items)):
            a = F.linear(self.user_emb(u), first.weight[:, :d])  # [B_k, w_1]
            b = F.linear(self.item_embs[k](it), first.weight[:, d:], first.bias)  # [B_k, C_k, w_1]
            h.append((a.unsqueeze(1) + b).reshape(-1, first.out_features))
        z = self.dropout(F.relu(torch.cat(h, dim=0)))  # [sum_k B_k C_k, w_1]
        if last_layer_io and len(self.layers) < 2:
            raise ValueError("last_layer_io needs at least 2 hidden layers")
        io = None
        for i, lin in enumerate(self.layers[1:], start=2):
            pre = lin(z)
            if i == len(self.layers):
                io = (z, pre)
            z = self.dropout(F.relu(pre))
        out, start = [], 0
        for k, it in enumerate(items):
            n = it.numel()
            out.append(self.heads[k](z[start:start + n]).reshape(it.shape))
            start += n
        return (out, io) if last_layer_io else out

    def _check_batch(self, users: Sequence[Tensor], items: Sequence[Tensor]) -> None:
        K = self.num_domains
        if len(users) != K or len(items) != K:
            raise ValueError(f"ADC.forward expects one users and one items tensor per domain (K={K}); "
                             f"got {len(users)} users and {len(items)} items tensors")
        for k, (u, it) in enumerate(zip(users, items)):
            if u.dim() != 1 or it.dim() != 2 or it.shape[0] != u.shape[0]:
                raise ValueError(f"domain {k}: expected users of shape [B] and items of shape [B, C]; "
                                 f"got users {tuple(u.shape)} and items {tuple(it.shape)}")

    # ---------------------------------------------------------------- ranking path
    @torch.no_grad()
    def score_all(self, users: Tensor, k: int, *, chunk_pairs: int | None = None,
                  threads: int | None = None) -> Tensor:
        """Logits of every item of domain k for each user: [U] -> [U, n_items[k]].

        The first layer factorises, ``W_1 [p_u; q_i] + b_1 = (W_1u p_u) + (W_1i q_i + b_1)``:
        the user half is computed once per user ([U, w_1]) and the item half once per
        item ([I, w_1]); a broadcast add gives every pair's first pre-activation. The
        remaining layers run on chunks of about ``chunk_pairs`` pairs (default:
        :func:`~adc_dist.pair_scorer.default_chunk_pairs`), so memory stays
        O(chunk_pairs * max width) per thread whatever U and I are. On CPU, ``threads``
        (default: torch's intra-op thread count) threads score blocks of users with one
        intra-op thread each (adc_dist.pair_scorer says why). Dropout is not applied:
        ranking is deterministic, dropout is a training-time regulariser.

        Runs in the autocast dtype when autocast is on for the model's device (bf16 on
        GPU), else in the parameters' dtype; the result has that dtype.
        """
        if not 0 <= k < self.num_domains:
            raise ValueError(f"domain index k={k} out of range for K={self.num_domains}")
        if users.dim() != 1:
            raise ValueError(f"score_all expects users of shape [U]; got {tuple(users.shape)}")
        dev = self.user_emb.weight.device
        if chunk_pairs is None:
            chunk_pairs = default_chunk_pairs(dev)
        if threads is None:
            threads = default_threads(dev)
        autocast_on = torch.is_autocast_enabled(dev.type)
        dtype = torch.get_autocast_dtype(dev.type) if autocast_on else self.user_emb.weight.dtype
        # Autocast is switched off inside and the casts are done once here: the chunk loop
        # writes into preallocated buffers (out=), which autocast would not respect.
        with torch.autocast(dev.type, enabled=False):
            cast = lambda t: t.to(dtype)  # noqa: E731
            first, d = self.layers[0], self.d
            a = F.linear(cast(self.user_emb(users)), cast(first.weight[:, :d]))  # [U, w_1]
            b = F.linear(cast(self.item_embs[k].weight), cast(first.weight[:, d:]), cast(first.bias))  # [I, w_1]
            rest = [(cast(lin.weight).t(), cast(lin.bias)) for lin in self.layers[1:]]
            h, c = cast(self.heads[k].weight[0]), cast(self.heads[k].bias)
            return score_pairs(a, b, rest, h, c, chunk_pairs=chunk_pairs, threads=threads)


def domain_losses(logits: Sequence[Tensor]) -> Tensor:
    """Mean binary cross-entropy per domain: [B_k, C_k] logits (K of them) -> [K].

    Column 0 is the positive (label 1), columns 1.. the sampled negatives (label 0); the
    mean is over all B_k * C_k entries. Computed in float32 even under bf16 autocast
    (as autocast itself does for BCE): the loss and its ratio to the first step's loss
    drive the balancers.
    """
    out = []
    for k, x in enumerate(logits):
        if x.dim() != 2 or x.numel() == 0:
            raise ValueError(f"domain {k}: expected non-empty logits of shape [B, C]; got {tuple(x.shape)}")
        x = x.float()
        # BCE-with-logits: label 1 -> softplus(-x), label 0 -> softplus(x) (stable forms).
        total = F.softplus(-x[:, 0]).sum() + F.softplus(x[:, 1:]).sum()
        out.append(total / x.numel())
    return torch.stack(out)
