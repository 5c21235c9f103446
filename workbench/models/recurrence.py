"""Fast exact recurrences for the bilinear family (no per-step hooks).

Two custom autograd functions do the whole time loop in one node of the autograd graph:

* :func:`dense_token_recurrence` — one dense transition matrix per *token* (``full``, ``cp``,
  ``block``): ``u_t = h_{t-1} A_{x_t}^T (+ c_t)``.
* :func:`diag_recurrence` — elementwise transitions given per step (``real_diag``,
  ``positive_diag``: real diagonal; ``complex_diag``, ``rotation``: complex diagonal on the
  pairs of dimensions ``(2n, 2n+1)``).

Both optionally L2-normalize every state, ``h_t = u_t / ||u_t||``.

Why custom functions: a Python time loop under autograd records ~5 nodes per step and, worse,
slicing a ``[T, B, ...]`` tensor that requires grad inside the loop makes backward O(T^2)
(every slice's backward allocates a full-size zero gradient). Here the forward runs under
``no_grad``, stores the states once, and a hand-written reverse loop computes the gradients;
the gradient of the per-token matrices is accumulated at the end with one GEMM per token.

Layout: time-major ``[T, B, ...]`` and the state as a *row* vector (``h @ A^T``): a ``bmm``
with column vectors runs ~7x slower on CPU (``benchmarks/bench_recurrence.py``).

Methods for the dense recurrence (``method=``):

``"grouped"``
    At every step the batch is permuted so that samples reading the same token are contiguous,
    and each token's group advances with one ``[B_v, H] @ [H, H]`` GEMM written straight into
    the output buffer. The permutations for all steps are computed up front (one ``argsort``),
    the state stays in "sorted" order and is un-permuted once at the end. Work: exact
    (no redundancy); cost: about ``1 + (#tokens present)`` kernel launches per step.
``"alltokens"``
    ``h @ [A_1^T ... A_V^T]`` for every token at once, then each sample picks its row. Two
    launches per step but ``V``-times redundant arithmetic: wins only for tiny ``B * H``.
``"kernel"``
    The grouped scheme as compiled loops (:mod:`workbench.models.kernels`, numba): one call
    for the whole forward and one for the backward's reverse loop, each token matrix read once
    per step and no BLAS packing. CPU only, float32/float64, no per-step backward hook.
``"auto"``
    ``"kernel"`` where it applies (CPU, float32/float64, numba importable, no ``grad_hook``),
    else chooses by a cost model of launches and arithmetic (:func:`choose_dense_method`).
"""
from __future__ import annotations

import torch

# Cost model constants for choose_dense_method, measured on the 2-core CPU of this project
# (benchmarks/bench_recurrence.py): ~3.5 us per eager op, ~60 GFLOP/s on mid-sized GEMMs.
_OP_SECONDS = 3.5e-6
_FLOP_RATE = 6.0e10

DENSE_METHODS = ("auto", "kernel", "grouped", "alltokens")


def choose_dense_method(n_tokens: int, batch: int, hidden: int, device: str = "cpu") -> str:
    """Pick the faster exact method for the dense per-token recurrence.

    Parameters
    ----------
    n_tokens : int
        Vocabulary size V (number of distinct transition matrices).
    batch, hidden : int
        B and H.
    device : str
        ``"cpu"`` (the cost model below) or a CUDA device (``alltokens`` unless its buffer
        would pass 1 GiB).

    Returns
    -------
    str
        ``"grouped"`` or ``"alltokens"``.

    Notes
    -----
    Per step, ``alltokens`` costs 2 launches plus ``V`` times the useful GEMM arithmetic;
    ``grouped`` costs ``1 + min(V, B)`` launches plus the useful arithmetic (at a lower
    efficiency, small GEMMs, modelled as 1.5x). The model is deliberately crude: it only
    has to separate "tiny batch*hidden" (launch-bound) from "real sizes" (arithmetic-bound).
    """
    if str(device).startswith("cuda"):
        # A GPU is launch-bound at these sizes: ``grouped`` needs a host sync (tolist) and one
        # launch per token per step; ``alltokens`` two launches per step, arithmetic is cheap.
        # Cap its [B, V*H] per-step buffer at 1 GiB.
        return "alltokens" if batch * n_tokens * hidden * 4 <= 2**30 else "grouped"
    useful = 2.0 * batch * hidden * hidden / _FLOP_RATE
    alltokens = 2 * _OP_SECONDS + n_tokens * useful
    groups = min(n_tokens, batch)
    grouped = (1 + groups) * _OP_SECONDS * 1.2 + 1.5 * useful
    return "alltokens" if alltokens < grouped else "grouped"


def _normalize_backward(g: torch.Tensor, y: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """Gradient through ``y = u / ||u||`` (rows): ``(g - y (y.g)) / ||u||``."""
    return (g - y * (y * g).sum(dim=1, keepdim=True)) / norm


def _segments(counts: torch.Tensor) -> list[list[tuple[int, int, int]]]:
    """Per step, the (token, start, end) of each non-empty token group in sorted order.

    counts : [T, V] int64. One ``tolist`` up front so the hot loop touches no tensors.
    """
    out = []
    for row in counts.tolist():
        segs, start = [], 0
        for v, n in enumerate(row):
            if n:
                segs.append((v, start, start + n))
                start += n
        out.append(segs)
    return out


def _token_grad_tables(
    keys: torch.Tensor, X: torch.Tensor, dU: torch.Tensor, n_tokens: int
) -> torch.Tensor:
    """``dAT[v] = sum over rows r with keys[r] == v of X[r]^T dU[r]``, one GEMM per token.

    keys : [N] token per row; X, dU : [N, H]. Returns [V, H, H].
    """
    order = torch.argsort(keys, stable=True)
    counts = torch.bincount(keys, minlength=n_tokens).tolist()
    return _segment_gemms(X.index_select(0, order), dU.index_select(0, order), counts)


def _token_grad_tables_onegemm(
    keys: torch.Tensor, X: torch.Tensor, dU: torch.Tensor, n_tokens: int
) -> torch.Tensor:
    """The same tables as :func:`_token_grad_tables` with one ``[H, N] @ [N, V*H]`` GEMM.

    ``dU`` is scattered into its token's block of a zero ``[N, V*H]`` matrix: V times the
    arithmetic, but no host synchronisation (no ``tolist``) and one kernel, which is what a
    GPU wants (and what CUDA-graph capture needs).
    """
    N, H = X.shape
    Z = torch.zeros(N, n_tokens, H, dtype=dU.dtype, device=dU.device)
    Z.scatter_(1, keys.view(N, 1, 1).expand(N, 1, H), dU.unsqueeze(1))
    return (X.t() @ Z.view(N, n_tokens * H)).view(H, n_tokens, H).transpose(0, 1)


def _segment_gemms(Xg: torch.Tensor, Ug: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Rows grouped by token (``counts[v]`` consecutive rows each): ``out[v] = Xg_v^T Ug_v``.

    ``empty`` plus zeroing only the absent tokens: a ``zeros`` of the whole [V, H, H] table is
    one more pass over V*H^2 floats that every present token overwrites anyway.
    """
    H = Xg.shape[1]
    out = torch.empty(len(counts), H, H, dtype=Xg.dtype, device=Xg.device)
    start = 0
    for v, n in enumerate(counts):
        if n:
            torch.mm(Xg[start:start + n].t(), Ug[start:start + n], out=out[v])
            start += n
        else:
            out[v].zero_()
    return out


class _DenseTokenRecurrence(torch.autograd.Function):
    """States of ``u_t = h_{t-1} @ AT[tok_t] (+ C_t)``, ``h_t = u_t (/ ||u_t||)``.

    Inputs: AT [V, H, H] (transposed per-token matrices), tokens [T, B] int64, h0 [B, H],
    C [T, B, H] or None, normalize (bool), method ("grouped" | "alltokens"), grad_hook
    (None or ``fn(grad wrt h_t [B, H], t) -> grad``, called at every step of backward).
    Output: states [T, B, H].
    """

    @staticmethod
    def forward(ctx, AT, tokens, h0, C, normalize, method, grad_hook=None):
        T, B = tokens.shape
        V, H, _ = AT.shape
        dtype, device = AT.dtype, AT.device
        need_grad = any(ctx.needs_input_grad[i] for i in (0, 2, 3))
        ctx.method, ctx.normalize, ctx.has_C = method, normalize, C is not None
        ctx.shape = (T, B, V, H)
        ctx.grad_hook = grad_hook
        AT = AT.contiguous()
        if method == "kernel":
            from . import kernels
            states, Nk, order, offsets = kernels.forward(AT, tokens, h0, C, normalize)
            if need_grad:
                ctx.save_for_backward(AT, states, Nk, order, offsets, h0, tokens)
            return states
        S = torch.empty(T, B, H, dtype=dtype, device=device)
        N = torch.empty(T, B, 1, dtype=dtype, device=device) if normalize else None
        N_steps = N.unbind(0) if normalize else None
        AT_v = AT.unbind(0)
        S_steps = S.unbind(0)
        if method == "grouped":
            # Slot j of step t holds sample order[t, j]: samples reading the same token are
            # contiguous, so each token's group is one GEMM on a contiguous row block. The
            # states are kept in the original order (two row index_selects per step are much
            # cheaper than un-permuting a fresh [T, B, H] tensor at the end).
            order = torch.argsort(tokens, dim=1, stable=True)
            inv = torch.empty_like(order).scatter_(
                1, order, torch.arange(B, device=device).expand(T, B))
            counts = torch.zeros(T, V, dtype=torch.long, device=device)
            counts.scatter_add_(1, tokens, torch.ones_like(tokens))
            segs = _segments(counts)
            X = torch.empty(T, B, H, dtype=dtype, device=device) if need_grad else None
            X_steps = X.unbind(0) if need_grad else None
            xbuf = torch.empty(B, H, dtype=dtype, device=device)
            sbuf = torch.empty(B, H, dtype=dtype, device=device)
            order_steps, inv_steps = order.unbind(0), inv.unbind(0)
            C_steps = None if C is None else C.unbind(0)
            prev = h0.contiguous()
            for t in range(T):
                xt = X_steps[t] if need_grad else xbuf
                torch.index_select(prev, 0, order_steps[t], out=xt)
                for v, s, e in segs[t]:
                    torch.mm(xt[s:e], AT_v[v], out=sbuf[s:e])
                st = S_steps[t]
                torch.index_select(sbuf, 0, inv_steps[t], out=st)
                if C_steps is not None:
                    st.add_(C_steps[t])
                if normalize:
                    st.div_(torch.linalg.vector_norm(st, dim=1, keepdim=True, out=N_steps[t]))
                prev = st
            states = S
            if need_grad:
                ctx.save_for_backward(AT, S, X, N, order, inv, tokens.gather(1, order))
                ctx.segs = segs
        elif method == "alltokens":
            AT_cat = AT.permute(1, 0, 2).reshape(H, V * H)               # [H, V*H]
            idx = tokens.view(T, B, 1, 1).expand(T, B, 1, H)
            big = torch.empty(B, V * H, dtype=dtype, device=device)
            idx_steps = idx.unbind(0)
            C_steps = None if C is None else C.unbind(0)
            prev = h0
            for t in range(T):
                torch.mm(prev, AT_cat, out=big)
                st = S_steps[t]
                torch.gather(big.view(B, V, H), 1, idx_steps[t], out=st.view(B, 1, H))
                if C_steps is not None:
                    st.add_(C_steps[t])
                if normalize:
                    st.div_(torch.linalg.vector_norm(st, dim=1, keepdim=True, out=N_steps[t]))
                prev = st
            states = S
            if need_grad:
                ctx.save_for_backward(AT, S, h0, N, tokens)
        else:
            raise ValueError(f"method={method!r}; accepted: 'kernel', 'grouped', 'alltokens'")
        return states

    @staticmethod
    def _backward_step(g_in, carry, y, n, out, hook=None, t=0):
        """Gradient wrt u_t written into ``out``; through the normalization when on.

        ``hook(grad wrt h_t, t + 1)`` (per-step backward hooks) sees the total gradient wrt the
        state and may replace it; it gets a tensor of its own (a hook may keep it). Without a
        hook everything is written with ``out=``: at small B*H each op's ~4 us dispatch is what
        a step costs, and an allocation plus a copy per step were two of them.
        """
        if hook is not None:
            g = out.copy_(hook(g_in if carry is None else g_in + carry, t + 1))
        elif carry is None:
            g = out.copy_(g_in)
        else:
            g = torch.add(g_in, carry, out=out)
        if y is not None:
            dot = (y * g).sum(dim=1, keepdim=True)
            torch.addcmul(g, y, dot, value=-1.0, out=out)
            out.div_(n)
        return out

    @staticmethod
    def backward(ctx, G):
        T, B, V, H = ctx.shape
        normalize = ctx.normalize
        G = G.contiguous()
        need_dU = ctx.has_C or ctx.method == "alltokens"
        dU = torch.empty(T, B, H, dtype=G.dtype, device=G.device) if need_dU else None
        dU_steps = dU.unbind(0) if need_dU else None
        step = _DenseTokenRecurrence._backward_step
        if ctx.method == "kernel":
            from . import kernels
            AT, S, Nk, order, offsets, h0, tokens = ctx.saved_tensors
            GU, grad_h0, grad_AT = kernels.backward(AT, order, offsets, S, Nk, G, normalize, h0, tokens,
                                                    want_weights=ctx.needs_input_grad[0])
            grad_C = GU if (ctx.has_C and ctx.needs_input_grad[3]) else None
            return grad_AT, None, grad_h0, grad_C, None, None, None
        if ctx.method == "grouped":
            AT, S, X, N, order, inv, sorted_tokens = ctx.saved_tensors
            # A_v as transposed views: BLAS reads them as they are (measured as fast as a
            # contiguous copy would be, and the copy, a strided transpose, costs more than
            # the backward's GEMMs at H=256).
            A_v = [a.t() for a in AT.unbind(0)]
            S_steps = S.unbind(0)
            N_steps = N.unbind(0) if normalize else None
            order_steps, inv_steps = order.unbind(0), inv.unbind(0)
            # GS[t]: the gradient wrt u_t in the step's sorted order, kept for the weight
            # gradient computed after the loop.
            GS = torch.empty(T, B, H, dtype=G.dtype, device=G.device)
            GS_steps = GS.unbind(0)
            gbuf = torch.empty(B, H, dtype=G.dtype, device=G.device)
            gx = torch.empty(B, H, dtype=G.dtype, device=G.device)
            carry = None
            segs = ctx.segs
            for t in range(T - 1, -1, -1):
                g = step(G[t], carry, S_steps[t] if normalize else None,
                         N_steps[t] if normalize else None,
                         dU_steps[t] if ctx.has_C else gbuf, ctx.grad_hook, t)
                gs = GS_steps[t]
                torch.index_select(g, 0, order_steps[t], out=gs)
                for v, s, e in segs[t]:
                    torch.mm(gs[s:e], A_v[v], out=gx[s:e])
                carry = gx.index_select(0, inv_steps[t])
            grad_h0 = carry
            # Weight gradient of all steps at once: rows (t, slot) sorted by token, then one
            # [H, n_v] @ [n_v, H] GEMM per token (n_v ~ B*T/V rows) instead of one rank-(B/V)
            # update of an H x H matrix per token and step, each a full pass over that matrix.
            grad_AT = None
            if ctx.needs_input_grad[0]:
                grad_AT = _token_grad_tables(sorted_tokens.reshape(-1), X.reshape(-1, H),
                                             GS.reshape(-1, H), V)
            grad_C = dU if (ctx.has_C and ctx.needs_input_grad[3]) else None
        else:
            AT, S, h0, N, tokens = ctx.saved_tensors
            # carry_b = g_b @ A_{tok_b}: g against every token's matrix at once, then each
            # sample picks its block (the forward's scheme; two launches per step).
            A_cols = AT.transpose(1, 2).permute(1, 0, 2).reshape(H, V * H)  # [i, v*H+j] = A_v[i, j]
            idx = tokens.view(T, B, 1, 1).expand(T, B, 1, H)
            big = torch.empty(B, V * H, dtype=G.dtype, device=G.device)
            carry_buf = torch.empty(B, H, dtype=G.dtype, device=G.device)
            carry = None
            for t in range(T - 1, -1, -1):
                g = step(G[t], carry, S[t] if normalize else None, N[t] if normalize else None,
                         dU_steps[t], ctx.grad_hook, t)
                torch.mm(g, A_cols, out=big)
                torch.gather(big.view(B, V, H), 1, idx[t], out=carry_buf.view(B, 1, H))
                carry = carry_buf
            grad_h0 = carry
            X = torch.cat([h0.unsqueeze(0), S[:-1]], dim=0)
            tables = _token_grad_tables_onegemm if G.is_cuda else _token_grad_tables
            grad_AT = tables(tokens.reshape(-1), X.reshape(-1, H), dU.reshape(-1, H), V)
            grad_C = dU if (ctx.has_C and ctx.needs_input_grad[3]) else None
        return grad_AT, None, grad_h0, grad_C, None, None, None


class _DiagRecurrence(torch.autograd.Function):
    """States of ``u_t = P_t * h_{t-1} (+ C_t)``, ``h_t = u_t (/ ||u_t||)``, elementwise.

    Inputs: P [T, B, H] (real diagonal, or complex diagonal interleaved as
    ``(a_0, b_0, a_1, b_1, ...)`` acting on the pairs ``(h_{2n}, h_{2n+1})``), h0 [B, H],
    C [T, B, H] or None, normalize (bool), is_complex (bool), grad_hook (as for the dense
    recurrence). Output: states [T, B, H].
    """

    @staticmethod
    def forward(ctx, P, h0, C, normalize, is_complex, grad_hook=None):
        T, B, H = P.shape
        S = torch.empty(T, B, H, dtype=P.dtype, device=P.device)
        N = torch.empty(T, B, 1, dtype=P.dtype, device=P.device) if normalize else None
        P = P.contiguous()
        if is_complex:
            Pv = torch.view_as_complex(P.view(T, B, H // 2, 2)).unbind(0)
            Sv = torch.view_as_complex(S.view(T, B, H // 2, 2)).unbind(0)
            prev = torch.view_as_complex(h0.contiguous().view(B, H // 2, 2))
        else:
            Pv, Sv, prev = P.unbind(0), S.unbind(0), h0
        S_steps = S.unbind(0)
        C_steps = None if C is None else C.unbind(0)
        for t in range(T):
            torch.mul(prev, Pv[t], out=Sv[t])
            st = S_steps[t]
            if C_steps is not None:
                st.add_(C_steps[t])
            if normalize:
                nt = torch.linalg.vector_norm(st, dim=1, keepdim=True, out=N[t])
                st.div_(nt)
            prev = Sv[t]
        ctx.save_for_backward(P, h0, S, N if normalize else None)
        ctx.normalize, ctx.is_complex, ctx.has_C = normalize, is_complex, C is not None
        ctx.grad_hook = grad_hook
        return S

    @staticmethod
    def backward(ctx, G):
        P, h0, S, N = ctx.saved_tensors
        T, B, H = P.shape
        normalize, is_complex = ctx.normalize, ctx.is_complex
        G = G.contiguous()
        dP = torch.empty_like(P)
        dU = torch.empty_like(S) if ctx.has_C else None
        carry = None
        if is_complex:
            Pc = torch.view_as_complex(P.view(T, B, H // 2, 2))
            Sc = torch.view_as_complex(S.view(T, B, H // 2, 2))
            h0c = torch.view_as_complex(h0.contiguous().view(B, H // 2, 2))
            dPc = torch.view_as_complex(dP.view(T, B, H // 2, 2))
        for t in range(T - 1, -1, -1):
            g = G[t] if carry is None else G[t] + carry
            if ctx.grad_hook is not None:
                g = ctx.grad_hook(g, t + 1)
            if normalize:
                g = _normalize_backward(g, S[t], N[t])
            if dU is not None:
                dU[t].copy_(g)
            if is_complex:
                gc = torch.view_as_complex(g.contiguous().view(B, H // 2, 2))
                prev = Sc[t - 1] if t > 0 else h0c
                torch.mul(gc, prev.conj(), out=dPc[t])
                carry = torch.view_as_real(gc * Pc[t].conj()).reshape(B, H)
            else:
                prev = S[t - 1] if t > 0 else h0
                torch.mul(g, prev, out=dP[t])
                carry = g * P[t]
        return dP, carry, dU, None, None, None


def _kernel_applies(AT: torch.Tensor, grad_hook) -> bool:
    """Whether the compiled ``"kernel"`` method can run these inputs."""
    if AT.device.type != "cpu" or AT.dtype not in (torch.float32, torch.float64) or grad_hook is not None:
        return False
    from . import kernels
    return kernels.available()


def dense_token_recurrence(
    AT: torch.Tensor,
    tokens: torch.Tensor,
    h0: torch.Tensor,
    C: torch.Tensor | None = None,
    normalize: bool = False,
    method: str = "auto",
    grad_hook=None,
) -> torch.Tensor:
    """Run ``h_t = norm(h_{t-1} @ AT[tokens_t] + C_t)`` for all steps.

    Parameters
    ----------
    AT : Tensor [V, H, H]
        Per-token transition matrices, *transposed* (``AT[v] = A_v^T``), so that the row
        state advances as ``h @ AT[v]``.
    tokens : LongTensor [T, B]
        Time-major token ids in ``[0, V)``.
    h0 : Tensor [B, H]
        Start states.
    C : Tensor [T, B, H] or None
        Additive term per step (the ``additive`` flag), or None.
    normalize : bool
        L2-normalize each state.
    method : {"auto", "kernel", "grouped", "alltokens"}
        See the module docstring.
    grad_hook : None or callable ``(grad [B, H], t) -> grad [B, H]``
        Called in backward at every step t = T..1 with the total gradient wrt the state h_t
        (before the normalization's backward); what it returns flows on. This is how a fast
        path fires per-step backward hooks.

    Returns
    -------
    Tensor [T, B, H]
        The states ``h_1 ... h_T``.
    """
    if method not in DENSE_METHODS:
        raise ValueError(f"method={method!r}; accepted: {', '.join(map(repr, DENSE_METHODS))}")
    if method == "kernel" and not _kernel_applies(AT, grad_hook):
        raise ValueError(f"method='kernel' runs on CPU float32/float64 tensors without a grad_hook "
                         f"and needs numba; got device={AT.device.type}, dtype={AT.dtype}, "
                         f"grad_hook={'set' if grad_hook is not None else None}; accepted "
                         f"otherwise: 'grouped', 'alltokens', 'auto'")
    if method == "auto":
        method = ("kernel" if _kernel_applies(AT, grad_hook) else
                  choose_dense_method(AT.shape[0], tokens.shape[1], AT.shape[1], AT.device.type))
    return _DenseTokenRecurrence.apply(AT, tokens, h0, C, bool(normalize), method, grad_hook)


def diag_recurrence(
    P: torch.Tensor,
    h0: torch.Tensor,
    C: torch.Tensor | None = None,
    normalize: bool = False,
    is_complex: bool = False,
    grad_hook=None,
) -> torch.Tensor:
    """Run the elementwise recurrence ``h_t = norm(P_t * h_{t-1} + C_t)``.

    Parameters
    ----------
    P : Tensor [T, B, H]
        Per-step diagonal. With ``is_complex`` the entries are interleaved complex numbers
        ``(a_0, b_0, a_1, b_1, ...)``; pair n multiplies the state pair ``(h_{2n}, h_{2n+1})``
        read as the complex number ``h_{2n} + i h_{2n+1}`` (the 2x2 block ``[[a, -b], [b, a]]``).
    h0 : Tensor [B, H]
    C : Tensor [T, B, H] or None
    normalize : bool
    is_complex : bool
    grad_hook : None or callable, as for :func:`dense_token_recurrence`.

    Returns
    -------
    Tensor [T, B, H]
    """
    return _DiagRecurrence.apply(P, h0, C, bool(normalize), bool(is_complex), grad_hook)
