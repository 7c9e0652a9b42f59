"""The ADC network: a shared user table, one item table per domain, a shared MLP, K heads.

ADC is "Adaptive Deep Learning of Cross-Domain Loss in Collaborative Filtering"
(Rafailidis & Weiss, arXiv 1907.01645). Its full text is not public here; the
architecture below is the reconstruction of ``../shared/DESIGN.md`` section 2:

    p_u  = P[u]                     (n_users x d, shared by all K domains: the transfer)
    q_i  = Q_k[i]                   (n_items[k] x d, one table per domain)
    z_0  = [p_u ; q_i]              (2d)
    z_l  = dropout(relu(W_l z_{l-1} + b_l)),  l = 1..L   (shared by all domains)
    y_hat = sigmoid(h_k . z_L + c_k)                      (one head per domain)

That is the ``paper`` preset. The variants (``TrainConfig`` fields, docs/model.md):
``user_repr="shared+specific"`` uses p_u^k = P[u] + S_k[u] (S_k one domain's own),
``"shared+gated"`` p_u^k = g_k * P[u] + S_k[u] with a learned gate g_k = 2 sigmoid(a_k)
per domain and dimension (each domain picks how much of the shared vector it reads);
``interaction="mlp+gmf"`` adds p . q to the logit (GMF, scale fixed at 1: a learnable
scale ran away under Adam at lr 1e-2), ``"gmf"`` keeps p . q alone (no MLP);
``item_bias`` adds b_k[i]; ``domain_losses(..., "bpr")`` is BPR instead of BCE.

Training scores (user, item) pairs (:meth:`ADC.forward`); evaluation ranks every item
of a domain for a block of users (:meth:`ADC.score_all`) with the factorised first
layer ``W_1 [p; q] = W_1u p + W_1i q``, which removes the first layer's cost per pair.
The per-domain losses (:func:`domain_losses`) are combined by a balancer
(``adc_dist.balancing``); GradNorm needs :attr:`ADC.shared_weight` (W_L, or P without
an MLP).

Nothing here fixes a dtype or a device: the module follows ``.to()`` and runs under
``torch.autocast`` (bf16 on GPU) unchanged.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adc_dist.config import INTERACTIONS, LOSSES, USER_REPRS
from adc_dist.errors import AdcError
from adc_dist.model import given_grad
from adc_dist.model.pair_scorer import default_chunk_pairs, default_threads, score_pairs
from adc_dist.model.row_tables import RowTable

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


def zero_init_tables(num_domains: int, specific: bool) -> set[str]:
    """The tables ``zero_init`` starts at zero: every S_k and every Q_k, never P.

    Why: a row that never gets a training signal keeps its initial value. With a random
    init, the S_k row of a user with no train item in domain k, and the Q_k row of an item
    nobody trained on, add random noise s_u^k . q_i to every score of that domain; on a
    domain cut to 10 % of its positives (40 % of Music's items and 49 % of the users left
    without one) that noise buried the item bias, which had learnt popularity (docs/model.md,
    "Zero-initialised tables"). From zero, such a row adds nothing: the user is ranked by
    the shared vector P[u] and the item by its bias until data moves them. P itself stays
    random: with P, S_k and Q_k all zero no dot product would ever get a gradient.
    """
    return {*(f"user_spec_{k}" for k in range(num_domains) if specific), *(f"item_{k}" for k in range(num_domains))}


class ADC(nn.Module):
    """ADC and its variants for K >= 1 domains (docs/model.md, "The model family").

    Args:
        n_users: users, shared id space over all domains.
        n_items: items per domain, ``n_items[k]`` for domain k (K = len(n_items)).
        d: embedding size of users and items.
        widths: widths of the L >= 1 shared hidden layers (see :func:`hidden_widths`);
            ignored (may be empty) for ``interaction="gmf"``.
        dropout: dropout after every hidden layer (training only).
        init_std: std of the normal init of the embedding tables.
        zero_init: start S_k and Q_k at zero and draw only P from the normal (see
            :func:`zero_init_tables`); False: every table is drawn (the paper).
        user_repr: ``"shared"``: p_u = P[u] (the paper); ``"shared+specific"``:
            p_u^k = P[u] + S_k[u], with one more user table per domain; ``"shared+gated"``:
            p_u^k = g_k * P[u] + S_k[u], g_k = 2 sigmoid(a_k) in (0, 2)^d, a_k learned
            (initialised at 0: g_k = 1, the shared+specific model at the start).
        interaction: ``"mlp"``: h_k . MLP([p; q]) + c_k (the paper); ``"mlp+gmf"``: that
            plus p . q (a GMF term, scale fixed at 1); ``"gmf"``: p . q alone.
        item_bias: add a learned bias b_k[i] per item to the logit.
        sparse: the embedding tables (P, S_k, Q_k) get row-sparse gradients, only the
            batch's rows (``sparse_tables``; adc_dist.train.optim says why and how).
    """

    def __init__(self, n_users: int, n_items: Sequence[int], d: int, widths: Sequence[int] = (),
                 dropout: float = 0.0, init_std: float = 0.01, *, user_repr: str = "shared",
                 interaction: str = "mlp", item_bias: bool = False, sparse: bool = False,
                 zero_init: bool = False) -> None:
        super().__init__()
        n_items = [int(n) for n in n_items]
        widths = [int(w) for w in widths] if interaction != "gmf" else []
        if n_users < 1 or not n_items or min(n_items) < 1:
            raise AdcError(f"ADC needs n_users >= 1 and >= 1 domain with >= 1 item "
                           f"(got n_users={n_users}, n_items={n_items})")
        if user_repr not in USER_REPRS or interaction not in INTERACTIONS:
            raise AdcError(f"ADC needs user_repr in {USER_REPRS} and interaction in {INTERACTIONS} "
                           f"(got {user_repr!r}, {interaction!r})")
        if d < 1 or (interaction != "gmf" and (not widths or min(widths) < 1)):
            raise AdcError(f"ADC needs d >= 1 and >= 1 hidden layer of width >= 1 (got d={d}, widths={widths})")
        self.d = int(d)
        self.n_items = tuple(n_items)
        self.widths = tuple(widths)
        self.user_repr, self.interaction = user_repr, interaction
        self.has_mlp, self.has_gmf = interaction != "gmf", interaction != "mlp"

        # sparse: row-sparse gradients that a step gathers once per table (model/row_tables.py)
        table = (lambda n: RowTable(n, d)) if sparse else (lambda n: nn.Embedding(n, d))
        self.user_emb = table(n_users)  # P: shared by every domain (the transfer)
        # S_k: the domain-specific part of the user; nothing of it is shared.
        self.user_specific = nn.ModuleList(table(n_users) for _ in n_items
                                           ) if user_repr != "shared" else None
        # a_k: the gate's logits, one row per domain. Bounded through a sigmoid: an unbounded
        # learned scale on an embedding ran away under Adam at lr 1e-2 (the GMF scale, issue 11).
        self.user_gate = nn.Parameter(torch.zeros(len(n_items), d)) if user_repr == "shared+gated" else None
        self.item_embs = nn.ModuleList(table(n) for n in n_items)
        self.item_bias = nn.ParameterList(nn.Parameter(torch.zeros(n)) for n in n_items) if item_bias else None
        ins = [2 * d] + widths[:-1]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(ins, widths))
        self.heads = nn.ModuleList(nn.Linear(widths[-1], 1) for _ in n_items) if self.has_mlp else nn.ModuleList()
        self.dropout = nn.Dropout(dropout)
        # W_L's gradient for the next backward, when the training step already has it
        # (sum_k w_k g_k from GradNorm's g_k; adc_dist.model.given_grad). Not state: None
        # outside a step.
        self.given_weight_grad: Tensor | None = None
        # (table, ids tensor, rows) of every lookup inside step_lookups(); None outside one.
        self._step_lookups: list[tuple[nn.Module, Tensor, Tensor]] | None = None

        # Embeddings: small normal (NCF's choice), or zero for S_k and Q_k (zero_init_tables);
        # layers: Xavier with zero bias, so the initial logits are near 0 and every domain
        # starts at BCE ~ log 2.
        zeros = zero_init_tables(len(n_items), user_repr != "shared") if zero_init else set()
        for name, emb in self.tables().items():
            if name in zeros:
                nn.init.zeros_(emb.weight)
            else:
                nn.init.normal_(emb.weight, std=init_std)
        for lin in [*self.layers, *self.heads]:
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    @classmethod
    def from_config(cls, cfg: "TrainConfig", n_users: int, n_items: Sequence[int]) -> "ADC":
        """The model a :class:`~adc_dist.config.TrainConfig` describes."""
        widths = hidden_widths(cfg.d, cfg.num_hidden_layers, cfg.hidden_shape) if cfg.interaction != "gmf" else []
        return cls(n_users, n_items, cfg.d, widths, dropout=cfg.dropout, init_std=cfg.init_std,
                   user_repr=cfg.user_repr, interaction=cfg.interaction, item_bias=cfg.item_bias,
                   sparse=cfg.sparse_tables_for(n_users, n_items), zero_init=cfg.zero_init)

    def tables(self) -> dict[str, nn.Module]:
        """The embedding tables by name, in a fixed order: ``user`` (P), ``user_spec_k`` (S_k,
        if any), ``item_k`` (Q_k); the names the sharded path gives them too."""
        out: dict[str, nn.Module] = {"user": self.user_emb}
        out.update({f"user_spec_{k}": m for k, m in enumerate(self.user_specific or [])})
        out.update({f"item_{k}": m for k, m in enumerate(self.item_embs)})
        return out

    @property
    def num_domains(self) -> int:
        return len(self.n_items)

    @property
    def shared_weight(self) -> nn.Parameter:
        """GradNorm's W, the last weight every domain shares.

        With an MLP: W_L, the last shared hidden layer, [widths[-1], in]. Without one
        (``gmf``): the shared user table P, [n_users, d] (the specific tables S_k, the gates
        g_k and the item tables are each one domain's and balance nothing).
        """
        return self.layers[-1].weight if self.has_mlp else self.user_emb.weight

    def _user_vecs(self, shared_rows: Tensor, users: Tensor, k: int) -> Tensor:
        """p_u (shared), p_u + s_u^k (shared+specific) or g_k * p_u + s_u^k (shared+gated)
        from the rows P[users]."""
        if self.user_specific is None:
            return shared_rows
        if self.user_gate is not None:
            shared_rows = shared_rows * self.gate(k).to(shared_rows.dtype)
        return shared_rows + self._lookup(self.user_specific[k], users)

    def gate(self, k: int) -> Tensor:
        """g_k = 2 sigmoid(a_k), [d]: how much of each shared dimension domain k reads (shared+gated)."""
        return 2.0 * torch.sigmoid(self.user_gate[k])

    # ---------------------------------------------------------------- training path
    def forward(self, users: Sequence[Tensor], items: Sequence[Tensor], *, last_layer_io: bool = False
                ) -> list[Tensor] | tuple[list[Tensor], tuple]:
        """Logits of (user, item) pairs, per domain.

        Args:
            users: K LongTensors, ``users[k]`` of shape [B_k].
            items: K LongTensors, ``items[k]`` of shape [B_k, C_k] (items of domain k;
                in training column 0 is the positive, columns 1.. the rho negatives).
            last_layer_io: also return what GradNorm needs to form dL_k/dW cheaply
                (``adc_dist.model.shared_grads``): with an MLP, the input [N, w_{L-1}]
                and pre-activation [N, w_L] of the last shared layer (N = sum_k B_k C_k,
                domains in order; needs L >= 2 hidden layers); for ``gmf``, the K
                gathered rows P[users[k]] and the K ``users`` tensors.
        Returns:
            K tensors, logits ``[B_k, C_k]`` (and the tap above if asked).

        All domains go through the shared MLP in one pass (one matmul per layer instead
        of K), and every head runs on every call: DDP needs every parameter used every
        step.
        """
        self._check_batch(users, items)
        if last_layer_io and self.has_mlp and len(self.layers) < 2:
            raise ValueError("last_layer_io needs at least 2 hidden layers")
        rows = [self._lookup(self.user_emb, u) for u in users]
        pus = [self._user_vecs(r, u, k) for k, (r, u) in enumerate(zip(rows, users))]
        qs = [self._lookup(self.item_embs[k], it) for k, it in enumerate(items)]  # [B_k, C_k, d]
        out, io = self._mlp_logits(pus, qs, last_layer_io) if self.has_mlp else ([None] * len(items), None)
        logits = []
        for k, it in enumerate(items):
            x = out[k]
            if self.has_gmf:  # p . q for every candidate
                # vecdot (multiply, sum over d), not bmm: a batched matrix-vector product
                # ran forward and backward ~2x slower on CPU (docs/performance.md).
                g = torch.linalg.vecdot(qs[k], pus[k].unsqueeze(1))
                x = g if x is None else x + g
            if self.item_bias is not None:
                x = x + self.item_bias[k][it]
            logits.append(x)
        if not last_layer_io:
            return logits
        return logits, (io if self.has_mlp else (rows, list(users)))

    def _mlp_logits(self, pus: list[Tensor], qs: list[Tensor], tap: bool = False) -> tuple[list[Tensor], tuple | None]:
        """h_k . MLP([p; q]) + c_k per domain, and the last shared layer's (input, pre-activation).
        ``tap``: the last shared layer takes W's gradient from ``given_weight_grad`` when the
        training step sets it (adc_dist.model.given_grad)."""
        # The first layer factorises here too: W_1u p_u once per user (not once per
        # candidate) plus W_1i q_i per candidate, about 40 % fewer FLOPs than on [p; q].
        first, d, w1 = self.layers[0], self.d, self.layers[0].out_features
        # Per domain, then one concatenation that the ReLU overwrites in place (its backward
        # reads its output only): one [N, w_1] buffer fewer per step. Stacking the domains
        # first, for one matmul per half, measured slower (docs/performance.md).
        h = torch.cat([(F.linear(p, first.weight[:, :d]).unsqueeze(1)  # [B_k, 1, w_1]
                        + F.linear(q, first.weight[:, d:], first.bias)).reshape(-1, w1)  # [B_k C_k, w_1]
                       for p, q in zip(pus, qs)])
        z = self.dropout(F.relu_(h))  # [N = sum_k B_k C_k, w_1]
        io = None
        for i, lin in enumerate(self.layers[1:], start=2):
            last = i == len(self.layers)
            pre = given_grad.linear(z, lin.weight, lin.bias, self) if tap and last else lin(z)
            if last:
                io = (z, pre)  # GradNorm differentiates at pre: no in-place op on it
            z = self.dropout(F.relu(pre))
        # split, not slices: the backward of a slice fills an [N, w_L] zero tensor per
        # domain and adds them up; split's concatenates the K pieces once.
        parts = z.split([q.shape[0] * q.shape[1] for q in qs])
        return [self.heads[k](zk).reshape(q.shape[:2]) for k, (zk, q) in enumerate(zip(parts, qs))], io

    def embedding_sq_norms(self, users: Sequence[Tensor], items: Sequence[Tensor]) -> Tensor:
        """Per domain, the L2 term of the batch's embeddings: [K].

        mean over the batch's users of ||P[u]||^2 (+ ||S_k[u]||^2) plus the mean over its
        candidates of ||Q_k[i]||^2 (BPR-MF's regulariser, adc_dist.compare.baselines.mf).
        ``shared+gated`` regularises what domain k reads, ||g_k * P[u]||^2: on P alone the gate
        dodged the L2 (every g_k rose to ~1.76 so that P could shrink; valid NDCG@10 fell).
        """
        out = []
        for k, (u, it) in enumerate(zip(users, items)):
            p = self._lookup(self.user_emb, u).float()
            if self.user_gate is not None:
                p = p * self.gate(k).float()
            t = p.pow(2).sum(-1).mean()
            if self.user_specific is not None:
                t = t + self._lookup(self.user_specific[k], u).float().pow(2).sum(-1).mean()
            out.append(t + self._lookup(self.item_embs[k], it).float().pow(2).sum(-1).mean())
        return torch.stack(out)

    @contextmanager
    def step_lookups(self) -> Iterator[None]:
        """Inside (a training step's forward and its L2 term): a table looked up again with the
        same ids tensor answers from its first lookup's rows instead of gathering them again.

        Why: the forward and :meth:`embedding_sq_norms` read the same batch, and every lookup
        of a dense table costs a backward of its own that scatters its rows into a zero
        [n, d] table, the two tables then added into ``.grad``. Sharing the rows sums both
        uses' gradients at batch size, and the table's backward runs once: 6-12 % less CPU
        per step of the default model (docs/performance.md, "One lookup per table and
        step"). Each call still returns a view of its own, so a gradient taken at one
        lookup's output (GradNorm's tapped rows of P) does not include the other's. Outside
        the context every lookup is a plain one.
        """
        self._step_lookups = []
        try:
            yield
        finally:
            self._step_lookups = None  # the rows hold the step's graph: never kept past it

    def _lookup(self, table: nn.Module, ids: Tensor) -> Tensor:
        """``table(ids)``, from the step's earlier lookup of the same ids tensor when there is one."""
        if self._step_lookups is None:
            return table(ids)
        for seen_table, seen_ids, rows in self._step_lookups:
            if seen_table is table and seen_ids is ids:  # the same tensor object, not equal values
                return rows.view_as(rows)
        rows = table(ids)
        self._step_lookups.append((table, ids, rows))
        return rows.view_as(rows)

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

        The MLP's first layer factorises, ``W_1 [p_u; q_i] + b_1 = (W_1u p_u) + (W_1i q_i + b_1)``:
        the user half is computed once per user ([U, w_1]) and the item half once per
        item ([I, w_1]); a broadcast add gives every pair's first pre-activation. The
        remaining layers run on chunks of about ``chunk_pairs`` pairs (default:
        :func:`~adc_dist.pair_scorer.default_chunk_pairs`), so memory stays
        O(chunk_pairs * max width) per thread whatever U and I are. On CPU, ``threads``
        (default: torch's intra-op thread count) threads score blocks of users with one
        intra-op thread each (adc_dist.pair_scorer says why). The GMF term is one
        [U, d] @ [d, I] matmul added in place, the item bias one broadcast add. Dropout
        is not applied: ranking is deterministic, dropout is a training-time regulariser.

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
            p = cast(self._user_vecs(self.user_emb(users), users, k))  # [U, d]
            q = cast(self.item_embs[k].weight)  # [I, d]
            out = None
            if self.has_mlp:
                first, d = self.layers[0], self.d
                a = F.linear(p, cast(first.weight[:, :d]))  # [U, w_1]
                b = F.linear(q, cast(first.weight[:, d:]), cast(first.bias))  # [I, w_1]
                rest = [(cast(lin.weight).t(), cast(lin.bias)) for lin in self.layers[1:]]
                h, c = cast(self.heads[k].weight[0]), cast(self.heads[k].bias)
                out = score_pairs(a, b, rest, h, c, chunk_pairs=chunk_pairs, threads=threads)
            if self.has_gmf:
                out = p @ q.t() if out is None else out.addmm_(p, q.t())
            if self.item_bias is not None:
                out.add_(cast(self.item_bias[k]))
            return out


def domain_losses(logits: Sequence[Tensor], loss: str = "bce") -> Tensor:
    """Mean loss per domain: [B_k, C_k] logits (K of them) -> [K].

    Column 0 is the positive, columns 1.. the sampled negatives. ``"bce"``: binary
    cross-entropy (label 1 for column 0, 0 for the rest), the mean over all B_k * C_k
    entries. ``"bpr"``: -log sigmoid(x_pos - x_neg), the mean over the B_k * (C_k - 1)
    (positive, negative) pairs (needs C_k >= 2). Computed in float32 even under bf16
    autocast (as autocast itself does for BCE): the loss and its ratio to the first
    step's loss drive the balancers.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
    out = []
    for k, x in enumerate(logits):
        if x.dim() != 2 or x.numel() == 0 or (loss == "bpr" and x.shape[1] < 2):
            raise ValueError(f"domain {k}: expected non-empty logits of shape [B, C] (C >= 2 for bpr); "
                             f"got {tuple(x.shape)}")
        x = x.float()
        if loss == "bpr":
            out.append(F.softplus(x[:, 1:] - x[:, :1]).mean())  # -log sigmoid(pos - neg)
            continue
        # BCE-with-logits: label 1 -> softplus(-x), label 0 -> softplus(x) (stable forms).
        total = F.softplus(-x[:, 0]).sum() + F.softplus(x[:, 1:]).sum()
        out.append(total / x.numel())
    return torch.stack(out)
