"""Compiled CPU kernels for the dense per-token recurrence (the ``"kernel"`` method).

Why compiled loops and not BLAS: at every step each token's group holds only ``B / V`` states
(2.6 at B=64, V=25), so each ``[B_v, H] @ [H, H]`` GEMM is dominated by what BLAS does before
multiplying (packing the ``H x H`` operand, ~15 us at H=256) and by the Python dispatch of
one call per token. The loops below read each token matrix once per step, row by row, and
update the group's few state rows in place (`_recurrence_loops.py`): the step costs about one pass over the
``V * H^2`` weights (memory traffic), not ``V`` BLAS calls. ``benchmarks/bench_training.py``
prints both methods side by side.

numba compiles the loops on first use (``cache=True`` keeps the machine code in ``__pycache__``, so
a later process loads it in milliseconds) and is imported only when the method runs, so
importing the workbench stays fast. The loops are single-threaded: the workbench runs one
thread per process and parallel processes for sweeps.

Shapes (time-major, the state as a row vector, as in :mod:`workbench.models.recurrence`):
``AT [V, H, H]`` (``AT[v] = A_v^T``), ``order [T, B]`` (per step, the samples sorted by token),
``offsets [T, V + 1]`` (token v's samples at step t are ``order[t, offsets[t, v]:offsets[t, v + 1]]``),
``h0 [B, H]``, ``S [T, B, H]`` the states written, ``N [T, B]`` their norms before normalising.
"""
from __future__ import annotations

import numpy as np
import torch

_KERNELS = None
_AVAILABLE: bool | None = None


def available() -> bool:
    """Whether numba can be imported (the ``"kernel"`` method needs it)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            import numba  # noqa: F401
            _AVAILABLE = True
        except ImportError:
            _AVAILABLE = False
    return _AVAILABLE


def kernels():
    """The compiled ``(forward, backward, accumulate)`` kernels, built once per process."""
    global _KERNELS
    if _KERNELS is None:
        if not available():
            raise RuntimeError("recurrence method 'kernel' needs numba (pip install numba); "
                               "accepted without it: 'grouped', 'alltokens'")
        from . import _recurrence_loops as loops
        _KERNELS = (loops.forward, loops.backward, loops.accumulate)
    return _KERNELS


def token_groups(tokens: torch.Tensor, n_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``order [T, B]`` and ``offsets [T, V + 1]`` (int64) of the time-major ``tokens [T, B]``."""
    T, _ = tokens.shape
    order = torch.argsort(tokens, dim=1, stable=True)
    counts = torch.zeros(T, n_tokens, dtype=torch.long)
    counts.scatter_add_(1, tokens, torch.ones_like(tokens))
    offsets = torch.zeros(T, n_tokens + 1, dtype=torch.long)
    torch.cumsum(counts, dim=1, out=offsets[:, 1:])
    return order, offsets


def forward(AT, tokens, h0, C, normalize):
    """States ``[T, B, H]`` and norms ``[T, B]`` (empty when not normalising); plus the groups.

    All tensors CPU, contiguous, one floating dtype; ``C`` may be None.
    """
    fwd = kernels()[0]
    T, B = tokens.shape
    V, H, _ = AT.shape
    AT, h0 = AT.detach().contiguous(), h0.detach().contiguous()
    C = None if C is None else C.detach().contiguous()
    order, offsets = token_groups(tokens, V)
    S = torch.empty(T, B, H, dtype=AT.dtype)
    N = torch.empty(T, B, dtype=AT.dtype)
    Cn = C.numpy() if C is not None else np.empty((1, 1, 1), dtype=S.numpy().dtype)
    fwd(AT.numpy(), order.numpy(), offsets.numpy(), h0.numpy(), Cn, C is not None,
        bool(normalize), S.numpy(), N.numpy(), S.numpy().dtype.type(0))
    return S, N, order, offsets


#: The weight gradient is accumulated inside the backward loop while the [V, H, H] table fits
#: this many bytes (about half this machine's L2), else from rows gathered by token afterwards.
FUSED_TABLE_BYTES = 512 * 1024


def backward(AT, order, offsets, S, N, G, normalize, h0, tokens, want_weights=True):
    """``(GU [T, B, H], grad_h0 [B, H], grad_AT [V, H, H] or None)``.

    ``h0``, ``tokens``: the forward's inputs. ``GU`` is the gradient wrt every ``u_t`` (also the
    gradient wrt ``C_t``); ``grad_AT`` is None unless ``want_weights``.
    """
    bwd = kernels()[1]
    G = G.detach().contiguous()
    T, B, H = G.shape
    V = AT.shape[0]
    GU = torch.empty(T, B, H, dtype=G.dtype)
    a = torch.empty(B, H, dtype=G.dtype)
    b = torch.empty(B, H, dtype=G.dtype)
    AT = AT.detach().contiguous()
    zero = GU.numpy().dtype.type(0)
    fuse = want_weights and V * H * H * G.element_size() <= FUSED_TABLE_BYTES
    dAT = torch.zeros(V, H, H, dtype=G.dtype) if fuse else torch.empty(1, 1, 1, dtype=G.dtype)
    h0 = h0.detach().contiguous()
    carry = bwd(AT.numpy(), order.numpy(), offsets.numpy(), S.numpy(), N.numpy(), G.numpy(),
                bool(normalize), GU.numpy(), a.numpy(), b.numpy(), zero, h0.numpy(), dAT.numpy(), fuse)
    grad_AT = dAT if fuse else None
    if want_weights and not fuse:
        X = torch.cat([h0.unsqueeze(0), S[:-1]], dim=0)
        grad_AT = token_tables(tokens.reshape(-1), X.reshape(-1, H), GU.reshape(-1, H), V)
    return GU, torch.from_numpy(carry), grad_AT


def token_tables(tokens: torch.Tensor, X: torch.Tensor, GU: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """``out[v] = sum over rows r with tokens[r] == v of X[r]^T GU[r]``: [V, H, H].

    tokens [N] int64; X, GU [N, H]. The weight gradient of the recurrence (rows = every
    (step, sample)), one pass over the output instead of one BLAS call per token.
    """
    order = torch.argsort(tokens, stable=True)
    offsets = torch.zeros(n_tokens + 1, dtype=torch.long)
    torch.cumsum(torch.bincount(tokens, minlength=n_tokens), dim=0, out=offsets[1:])
    Xs = X.detach().index_select(0, order)
    Gs = GU.detach().index_select(0, order)
    out = torch.zeros(n_tokens, X.shape[1], X.shape[1], dtype=X.dtype)
    rows = torch.arange(len(tokens))            # already sorted: the identity order
    kernels()[2](out.numpy(), rows.numpy(), offsets.numpy(), Xs.numpy(), Gs.numpy())
    return out
