"""Small generated cross-domain tasks with a known, planted structure.

Users and items belong to ``n_clusters`` latent groups; in a *structured* domain a user's
positives are drawn mostly from items of the user's own group, so a model that learns the
shared user embedding ranks them well. A *noise* domain draws positives uniformly: its
loss cannot fall much, which makes its relative inverse training rate (GradNorm's r_k)
grow. Split: per user and domain, the last 20 % of the positives are test, the 10 %
before valid.
"""

from __future__ import annotations

import numpy as np

from adc_dist.data.task_data import Interactions, TaskData


def make_task(n_users: int = 300, n_items: tuple[int, ...] = (200, 150), per_user: tuple[int, ...] = (20, 6),
              noise: tuple[bool, ...] = (False, False), n_clusters: int = 5, seed: int = 0,
              domains: tuple[str, ...] | None = None) -> TaskData:
    rng = np.random.default_rng(seed)
    K = len(n_items)
    domains = domains or tuple(f"d{k}" for k in range(K))
    user_group = rng.integers(0, n_clusters, n_users)
    splits: dict[str, list[Interactions]] = {"train": [], "valid": [], "test": []}
    for k in range(K):
        item_group = np.arange(n_items[k]) % n_clusters
        parts = {"train": ([], []), "valid": ([], []), "test": ([], [])}
        for u in range(n_users):
            if noise[k]:
                pool = np.arange(n_items[k])
            else:
                # 90 % of a user's items come from the user's own group.
                own = np.flatnonzero(item_group == user_group[u])
                pool = own if rng.random() < 0.9 else np.arange(n_items[k])
            m = min(per_user[k], len(pool))
            items = rng.choice(pool, size=m, replace=False)
            n_test, n_valid = max(1, m // 5), max(1, m // 10)
            cut = {"train": items[: m - n_test - n_valid], "valid": items[m - n_test - n_valid: m - n_test],
                   "test": items[m - n_test:]}
            for s, its in cut.items():
                parts[s][0].append(np.full(len(its), u, dtype=np.int64))
                parts[s][1].append(its.astype(np.int64))
        for s in splits:
            splits[s].append(Interactions(np.concatenate(parts[s][0]), np.concatenate(parts[s][1])))
    return TaskData("synthetic", domains, n_users, tuple(n_items), tuple(splits["train"]),
                    tuple(splits["valid"]), tuple(splits["test"]), {"seed": seed, "generator": "tests/synthetic.py"})
