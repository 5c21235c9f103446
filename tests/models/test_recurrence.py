"""The fast recurrences: exact gradients (gradcheck, float64) and agreement with a plain loop."""
import pytest
import torch

from workbench.models import kernels
from workbench.models.recurrence import (
    _token_grad_tables, _token_grad_tables_onegemm, choose_dense_method, dense_token_recurrence,
    diag_recurrence)


def loop_dense(AT, tokens, h0, C, normalize):
    h, out = h0, []
    for t in range(tokens.shape[0]):
        h = torch.bmm(h.unsqueeze(1), AT[tokens[t]]).squeeze(1)
        if C is not None:
            h = h + C[t]
        if normalize:
            h = h / h.norm(dim=1, keepdim=True)
        out.append(h)
    return torch.stack(out)


@pytest.mark.parametrize("method", ["kernel", "grouped", "alltokens"])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("additive", [False, True])
def test_dense_gradcheck_and_loop(method, normalize, additive):
    g = torch.Generator().manual_seed(0)
    T, B, V, H = 5, 4, 3, 4
    AT = torch.randn(V, H, H, dtype=torch.float64, generator=g, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.float64, generator=g, requires_grad=True)
    C = torch.randn(T, B, H, dtype=torch.float64, generator=g, requires_grad=True) if additive else None
    tok = torch.randint(0, V, (T, B), generator=g)
    f = lambda AT, h0, C: dense_token_recurrence(AT, tok, h0, C, normalize, method)
    assert torch.autograd.gradcheck(f, (AT, h0, C))
    torch.testing.assert_close(f(AT, h0, C), loop_dense(AT, tok, h0, C, normalize), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("is_complex", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("additive", [False, True])
def test_diag_gradcheck(is_complex, normalize, additive):
    g = torch.Generator().manual_seed(0)
    T, B, H = 5, 3, 4
    P = torch.randn(T, B, H, dtype=torch.float64, generator=g, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.float64, generator=g, requires_grad=True)
    C = torch.randn(T, B, H, dtype=torch.float64, generator=g, requires_grad=True) if additive else None
    assert torch.autograd.gradcheck(lambda P, h0, C: diag_recurrence(P, h0, C, normalize, is_complex), (P, h0, C))


def test_method_choice_follows_sizes():
    assert choose_dense_method(8, 256, 64) == "grouped"
    assert choose_dense_method(120, 256, 64) == "grouped"
    assert choose_dense_method(5, 16, 8) == "alltokens"
    assert choose_dense_method(25, 64, 256, "cuda") == "alltokens"
    assert choose_dense_method(10_000, 4096, 1024, "cuda") == "grouped"   # 160 GiB buffer


def test_weight_gradient_tables_agree():
    """The GPU form (one GEMM on a scattered matrix) equals the per-token GEMMs, absent tokens 0."""
    g = torch.Generator().manual_seed(1)
    keys = torch.tensor([3, 0, 3, 1, 0, 3, 1])           # token 2 absent
    X = torch.randn(7, 5, dtype=torch.float64, generator=g)
    dU = torch.randn(7, 5, dtype=torch.float64, generator=g)
    ref = torch.stack([sum((torch.outer(X[r], dU[r]) for r in range(7) if keys[r] == v),
                           torch.zeros(5, 5, dtype=torch.float64)) for v in range(4)])
    torch.testing.assert_close(_token_grad_tables(keys, X, dU, 4), ref)
    torch.testing.assert_close(_token_grad_tables_onegemm(keys, X, dU, 4), ref)
    assert not _token_grad_tables(keys, X, dU, 4)[2].any()


def test_bad_method():
    with pytest.raises(ValueError, match="method='fast'"):
        dense_token_recurrence(torch.zeros(2, 3, 3), torch.zeros(4, 2, dtype=torch.long), torch.ones(2, 3), method="fast")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("H", [7, 64])   # 7: the rows left over by the four-row passes
def test_kernel_matches_grouped_at_real_sizes(dtype, H):
    """The compiled loops give the grouped method's states and gradients (every token present,
    some absent: V=30 > B=16), up to rounding."""
    g = torch.Generator().manual_seed(2)
    T, B, V = 12, 16, 30
    AT = (torch.randn(V, H, H, dtype=dtype, generator=g) / H ** 0.5).requires_grad_()
    h0 = torch.randn(B, H, dtype=dtype, generator=g).requires_grad_()
    C = torch.randn(T, B, H, dtype=dtype, generator=g).requires_grad_()
    tok = torch.randint(0, V, (T, B), generator=g)
    W = torch.randn(T, B, H, dtype=dtype, generator=g)
    out = {}
    for method in ("kernel", "grouped"):
        y = dense_token_recurrence(AT, tok, h0, C, True, method)
        out[method] = (y, *torch.autograd.grad((y * W).sum(), (AT, h0, C)))
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    for a, b in zip(out["kernel"], out["grouped"], strict=True):
        torch.testing.assert_close(a, b, **tol)


def test_auto_picks_the_kernel_on_cpu_and_refuses_it_where_it_cannot_run():
    assert kernels.available()
    AT = torch.randn(3, 4, 4)
    tok = torch.zeros(2, 2, dtype=torch.long)
    h0 = torch.ones(2, 4)
    torch.testing.assert_close(dense_token_recurrence(AT, tok, h0, method="auto"),
                               dense_token_recurrence(AT, tok, h0, method="grouped"))
    with pytest.raises(ValueError, match="grad_hook=set"):
        dense_token_recurrence(AT, tok, h0, method="kernel", grad_hook=lambda g, t: g)
    with pytest.raises(ValueError, match="dtype=torch.bfloat16"):
        dense_token_recurrence(AT.bfloat16(), tok, h0.bfloat16(), method="kernel")
    # a backward hook needs the grouped loop (it calls Python at every step): auto falls back
    seen = []
    AT.requires_grad_()
    dense_token_recurrence(AT, tok, h0, method="auto", grad_hook=lambda g, t: seen.append(t) or g).sum().backward()
    assert seen == [2, 1]


def test_kernel_token_tables_equal_the_per_token_gemms():
    g = torch.Generator().manual_seed(1)
    keys = torch.tensor([3, 0, 3, 1, 0, 3, 1, 3, 3, 3])     # token 2 absent; token 3 has 6 rows
    X = torch.randn(10, 5, dtype=torch.float64, generator=g)
    dU = torch.randn(10, 5, dtype=torch.float64, generator=g)
    torch.testing.assert_close(kernels.token_tables(keys, X, dU, 4), _token_grad_tables(keys, X, dU, 4))
    assert not kernels.token_tables(keys, X, dU, 4)[2].any()


def test_readout_gradient_is_exact_to_second_order():
    """The readout's own backward (W's gradient as (g^T x)^T, the fast GEMM form) is exact and
    differentiable again (gradgradcheck), for time-major 3-d inputs as the fast path gives them."""
    from workbench.models.bilinear import _Readout, _time_major_matmul

    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    W = torch.randn(4, 2, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(_Readout.apply, (x, W))
    assert torch.autograd.gradgradcheck(_Readout.apply, (x, W))
    view = x.transpose(0, 1)                      # [B, T, H] over time-major storage
    torch.testing.assert_close(_time_major_matmul(view, W), view @ W)
