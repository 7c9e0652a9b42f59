"""The threaded CPU pair scorer behind ADC.score_all (adc_dist.model.pair_scorer)."""

from __future__ import annotations

import pytest
import torch

from adc_dist.model.pair_scorer import score_pairs


def _net(U=37, I=53, w=(12, 6, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(U, w[0], generator=g), torch.randn(I, w[0], generator=g)
    rest = [(torch.randn(i, o, generator=g), torch.randn(o, generator=g)) for i, o in zip(w, w[1:])]
    return a, b, rest, torch.randn(w[-1], generator=g), torch.randn(1, generator=g)


def _reference(a, b, rest, h, c):
    z = torch.relu(a[:, None, :] + b[None, :, :])
    for wt, bias in rest:
        z = torch.relu(z @ wt + bias)
    return z @ h + c


@pytest.mark.parametrize("chunk_pairs", [1, 20, 53, 200, 10_000])
@pytest.mark.parametrize("threads", [1, 2, 5])
def test_every_pair_is_scored_once_whatever_the_chunks_and_threads(chunk_pairs, threads):
    net = _net()
    got = score_pairs(*net, chunk_pairs=chunk_pairs, threads=threads)
    torch.testing.assert_close(got, _reference(*net), rtol=1e-5, atol=1e-5)


def test_threads_give_the_same_scores_as_one_thread_and_restore_torchs_thread_count():
    before = torch.get_num_threads()
    net = _net(U=300, I=400, w=(32, 16))
    one = score_pairs(*net, chunk_pairs=1000, threads=1)
    many = score_pairs(*net, chunk_pairs=1000, threads=3)
    torch.testing.assert_close(many, one, rtol=1e-6, atol=1e-6)  # same ops on the same chunks
    assert torch.get_num_threads() == before


def test_a_failing_worker_raises_in_the_caller_and_the_thread_count_is_restored():
    before = torch.get_num_threads()
    a, b, rest, h, c = _net()
    rest = [(torch.randn(5, 6), rest[0][1])] + rest[1:]  # W^T of the wrong shape: addmm fails
    with pytest.raises(RuntimeError):
        score_pairs(a, b, rest, h, c, chunk_pairs=20, threads=2)
    assert torch.get_num_threads() == before
