"""The last shared layer's linear whose weight gradient the training step may hand over."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from adc_dist.model import given_grad


class _Holder:
    given_weight_grad = None


def _inputs():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 8, generator=gen, requires_grad=True)
    w = torch.randn(4, 8, generator=gen, requires_grad=True)
    b = torch.randn(4, generator=gen, requires_grad=True)
    return x, w, b, torch.randn(50, 4, generator=gen)


def test_without_a_given_gradient_it_is_f_linear_forward_and_backward():
    x, w, b, up = _inputs()
    out = given_grad.linear(x, w, b, _Holder())
    want = F.linear(x, w, b)
    assert torch.equal(out, want)
    got = torch.autograd.grad(out, (x, w, b), up)
    ref = torch.autograd.grad(want, (x, w, b), up)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-6, atol=1e-6)


def test_a_given_gradient_replaces_the_weights_and_leaves_the_inputs_and_the_bias():
    x, w, b, up = _inputs()
    holder = _Holder()
    holder.given_weight_grad = torch.full((4, 8), 0.25)
    gx, gw, gb = torch.autograd.grad(given_grad.linear(x, w, b, holder), (x, w, b), up)
    assert torch.equal(gw, holder.given_weight_grad)
    rx, _, rb = torch.autograd.grad(F.linear(x, w, b), (x, w, b), up)
    torch.testing.assert_close(gx, rx, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gb, rb, rtol=1e-6, atol=1e-6)


def test_under_bf16_autocast_the_gradients_come_back_in_the_parameters_dtypes():
    x, w, b, _ = _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = given_grad.linear(x, w, b, _Holder())
        want = F.linear(x, w, b)
    assert out.dtype == want.dtype == torch.bfloat16
    got = torch.autograd.grad(out.float().sum(), (x, w, b))
    ref = torch.autograd.grad(want.float().sum(), (x, w, b))
    for g, r, t in zip(got, ref, (x, w, b)):
        assert g.dtype == t.dtype
        torch.testing.assert_close(g, r, rtol=2e-2, atol=2e-2)
