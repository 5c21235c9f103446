"""The numba loops behind :mod:`workbench.models.kernels` (imported only when they run).

Module-level ``njit(cache=True)`` functions, so a process after the first loads the compiled
machine code from ``__pycache__`` instead of compiling again.
"""
import numba as nb
import numpy as np

jit = nb.njit(fastmath=True, cache=True, nogil=True)


@jit
def _advance_one(A, x, o, H, H4):
    # o += x @ A for one state row: four rows of A per pass (one load and store of o per four
    # multiply-adds).
    for k in range(0, H4, 4):
        r0 = A[k]
        r1 = A[k + 1]
        r2 = A[k + 2]
        r3 = A[k + 3]
        x0 = x[k]
        x1 = x[k + 1]
        x2 = x[k + 2]
        x3 = x[k + 3]
        for j in range(H):
            o[j] += x0 * r0[j] + x1 * r1[j] + x2 * r2[j] + x3 * r3[j]
    for k in range(H4, H):
        r0 = A[k]
        x0 = x[k]
        for j in range(H):
            o[j] += x0 * r0[j]


@jit
def advance(M, order_t, offsets_t, X, OUT):
    # OUT[s] += X[s] @ M[v] for every sample s reading token v at this step. Samples go four
    # at a time (two rows of M[v] loaded per pass serve eight multiply-adds: what makes large
    # groups fast), the rest one at a time (small groups: H=256 at B/V ~ 2.6, where each
    # matrix is read once per step from L3 and that read is the cost).
    V, H, _ = M.shape
    H2 = H - H % 2
    H4 = H - H % 4
    for v in range(V):
        a = offsets_t[v]
        b = offsets_t[v + 1]
        A = M[v]
        i = a
        while i + 4 <= b:
            p0 = X[order_t[i]]
            p1 = X[order_t[i + 1]]
            p2 = X[order_t[i + 2]]
            p3 = X[order_t[i + 3]]
            o0 = OUT[order_t[i]]
            o1 = OUT[order_t[i + 1]]
            o2 = OUT[order_t[i + 2]]
            o3 = OUT[order_t[i + 3]]
            for k in range(0, H2, 2):
                r0 = A[k]
                r1 = A[k + 1]
                a0 = p0[k]
                a1 = p0[k + 1]
                b0 = p1[k]
                b1 = p1[k + 1]
                c0 = p2[k]
                c1 = p2[k + 1]
                d0 = p3[k]
                d1 = p3[k + 1]
                for j in range(H):
                    x = r0[j]
                    y = r1[j]
                    o0[j] += a0 * x + a1 * y
                    o1[j] += b0 * x + b1 * y
                    o2[j] += c0 * x + c1 * y
                    o3[j] += d0 * x + d1 * y
            for k in range(H2, H):
                r0 = A[k]
                a0 = p0[k]
                b0 = p1[k]
                c0 = p2[k]
                d0 = p3[k]
                for j in range(H):
                    x = r0[j]
                    o0[j] += a0 * x
                    o1[j] += b0 * x
                    o2[j] += c0 * x
                    o3[j] += d0 * x
            i += 4
        while i < b:
            _advance_one(A, X[order_t[i]], OUT[order_t[i]], H, H4)
            i += 1


@jit
def forward(AT, order, offsets, h0, C, has_C, normalize, S, N, zero):
    T, B = order.shape
    H = AT.shape[1]
    prev = h0
    for t in range(T):
        St = S[t]
        for s in range(B):
            for j in range(H):
                St[s, j] = C[t, s, j] if has_C else zero
        advance(AT, order[t], offsets[t], prev, St)
        if normalize:
            for s in range(B):
                acc = zero
                for j in range(H):
                    acc += St[s, j] * St[s, j]
                n = np.sqrt(acc)
                N[t, s] = n
                inv = 1.0 / n
                for j in range(H):
                    St[s, j] *= inv
        prev = St

@jit
def retreat(M, order_t, offsets_t, G, OUT, zero):
    # OUT[s] = G[s] @ M[v]^T: dot products of G[s] with four rows of M[v] at a time (the
    # backward of `advance` on the same table, so no transposed copy is needed: one
    # costs as much as this whole loop at H=256). `zero` is the dtype's 0: a float
    # literal would make the accumulators float64 and stop the float32 vectorisation.
    V, H, _ = M.shape
    H4 = H - H % 4
    for v in range(V):
        a = offsets_t[v]
        b = offsets_t[v + 1]
        if a == b:
            continue
        A = M[v]
        for k in range(0, H4, 4):
            r0 = A[k]
            r1 = A[k + 1]
            r2 = A[k + 2]
            r3 = A[k + 3]
            for i in range(a, b):
                s = order_t[i]
                gs = G[s]
                d0 = zero
                d1 = zero
                d2 = zero
                d3 = zero
                for j in range(H):
                    x = gs[j]
                    d0 += x * r0[j]
                    d1 += x * r1[j]
                    d2 += x * r2[j]
                    d3 += x * r3[j]
                OUT[s, k] = d0
                OUT[s, k + 1] = d1
                OUT[s, k + 2] = d2
                OUT[s, k + 3] = d3
        for k in range(H4, H):
            r0 = A[k]
            for i in range(a, b):
                s = order_t[i]
                d0 = zero
                for j in range(H):
                    d0 += G[s, j] * r0[j]
                OUT[s, k] = d0

@jit
def accumulate(dM, order_t, offsets_t, X, G):
    # dM[v] += X_v^T G_v over the rows order_t[offsets_t[v]:offsets_t[v + 1]] (four rows per
    # pass). The backward calls it once per step while the whole [V, H, H] gradient stays in
    # L2; kernels.token_tables once, on every (step, sample) row sorted by token, otherwise.
    V, H, _ = dM.shape
    for v in range(V):
        a = offsets_t[v]
        b = offsets_t[v + 1]
        if a == b:
            continue
        dv = dM[v]
        for k in range(H):
            o = dv[k]
            i = a
            while i + 4 <= b:
                s0 = order_t[i]
                s1 = order_t[i + 1]
                s2 = order_t[i + 2]
                s3 = order_t[i + 3]
                x0 = X[s0, k]
                x1 = X[s1, k]
                x2 = X[s2, k]
                x3 = X[s3, k]
                g0 = G[s0]
                g1 = G[s1]
                g2 = G[s2]
                g3 = G[s3]
                for j in range(H):
                    o[j] += x0 * g0[j] + x1 * g1[j] + x2 * g2[j] + x3 * g3[j]
                i += 4
            while i < b:
                s0 = order_t[i]
                x0 = X[s0, k]
                g0 = G[s0]
                for j in range(H):
                    o[j] += x0 * g0[j]
                i += 1


@jit
def backward(AT, order, offsets, S, N, G, normalize, GU, carry, nxt, zero, h0, dAT, fuse):
    # GU[t] <- the gradient wrt u_t; returns the gradient wrt h0 (carry, nxt: [B, H]).
    # With `fuse`, dAT (zeroed by the caller) accumulates the weight gradient step by step.
    T, B = order.shape
    H = AT.shape[1]
    for s in range(B):
        for j in range(H):
            carry[s, j] = zero
    for t in range(T - 1, -1, -1):
        g = GU[t]
        for s in range(B):
            for j in range(H):
                g[s, j] = G[t, s, j] + carry[s, j]
            if normalize:
                dot = zero
                for j in range(H):
                    dot += S[t, s, j] * g[s, j]
                inv = 1.0 / N[t, s]
                for j in range(H):
                    g[s, j] = (g[s, j] - S[t, s, j] * dot) * inv
        if fuse:
            accumulate(dAT, order[t], offsets[t], S[t - 1] if t > 0 else h0, g)
        retreat(AT, order[t], offsets[t], g, nxt, zero)
        carry, nxt = nxt, carry
    return carry
