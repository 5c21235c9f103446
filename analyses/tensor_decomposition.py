"""Decompositions of the transition tensor: CP and Tucker, token gates, readout interaction matrices.

The transition tensor of any bilinear model is built from its per-token matrices,

    W[i, j, v] = A_v[i, j]          shape [H, H, V]   (i: new state, j: previous state, v: token)

which is exactly the parameter ``W`` of the ``full`` variant with one-hot input (``D = V``) and, for
every other variant, the tensor it implements on the tokens (structured variants are special
points of this space: ``cp`` has CP rank <= R, diagonal variants have ``W[i, j, v] = 0`` for
``i != j``). Using the token tensor rather than raw parameters makes every variant comparable,
including ``rotation`` (whose ``A`` is not linear in the input).

* **CP** ``W ~ sum_r w_r  a_r (x) b_r (x) g_r``: component ``r`` reads the previous state along
  ``b_r``, writes along ``a_r``, and is switched on by token ``v`` with gate ``g_r[v]``. The error
  against rank tells how many such "gated rank-1 channels" the model uses (an FSM construction
  needs at most ``|Q| |Sigma|``; a rotation solution of ``Z_m``, 4).
* **Tucker** ``W ~ core x1 U x2 V x3 G`` with ranks ``(r_out, r_in, r_tok)``: the dimensions of the
  written state space, the read state space and the token space that matter.
* **Readout interaction matrices** (as for bilinear MLPs, Pearce et al. 2024). The logit of class
  ``c`` after reading token ``x`` in state ``h`` is bilinear in ``(h, x)``:

      logit_c = sum_i U[i, c] sum_{j,v} W[i, j, v] h[j] x[v] = h^T M_c x,
      M_c[j, v] = sum_i U[i, c] W[i, j, v]                    shape [H, V]

  With ``z = [h; x]`` this is the quadratic form ``z^T Q_c z`` of the symmetric matrix
  ``Q_c = 1/2 [[0, M_c], [M_c^T, 0]]`` ([H+V, H+V]). Its eigenvalues come in pairs ``+-s_k/2``
  (``s_k`` the singular values of ``M_c``) with eigenvectors ``(u_k, +-v_k)/sqrt 2``: the top pair
  says "a previous state along ``u_k`` combined with tokens weighted by ``v_k`` raises class
  ``c`` by ``s_k`` per unit of each; the sign-flipped token pattern lowers it". The number of
  large eigenvalues is the number of independent (state, token) patterns the model uses to
  produce class ``c`` (for an FSM construction ``M_c[j, v] = 1`` exactly when
  ``delta(q_j, v)`` outputs ``c``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyses._result import Result
from analyses._result import format_number as _num


def transition_tensor(A: np.ndarray, normalize: str | None = "frobenius") -> np.ndarray:
    """Token tensor ``W[i, j, v] = A_v[i, j] / s_v``.

    Parameters
    ----------
    A : array, (V, H, H)
    normalize : "frobenius", "spectral" or None
        Per-token positive scale ``s_v`` to remove (predictions are invariant to it): the Frobenius
        norm (every token weighs equally in the reconstruction error), the spectral radius, or 1.

    Returns
    -------
    W : array, (H, H, V)
    """
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 3 or A.shape[1] != A.shape[2]:
        raise ValueError(f"A must have shape [V, H, H]; got {A.shape}")
    if normalize == "frobenius":
        s = np.linalg.norm(A, axis=(1, 2))
    elif normalize == "spectral":
        s = np.abs(np.linalg.eigvals(A)).max(axis=1)
    elif normalize is None:
        s = np.ones(A.shape[0])
    else:
        raise ValueError(f"normalize must be 'frobenius', 'spectral' or None; got {normalize!r}")
    s = np.where(s > 0, s, 1.0)
    return np.ascontiguousarray((A / s[:, None, None]).transpose(1, 2, 0))


def model_transition_tensor(model, normalize: str | None = "frobenius") -> np.ndarray:
    """``transition_tensor`` of a bilinear model (baselines raise ValueError). Shape (H, H, V)."""
    from analyses._core import model_transitions

    A, _ = model_transitions(model)
    return transition_tensor(A, normalize)


@dataclass(repr=False)
class CPResult(Result):
    """Rank-R CP decomposition ``W ~ sum_r weights[r] out[:, r] (x) inp[:, r] (x) gates[:, r]``."""

    rank: int
    weights: np.ndarray   # (R,), sorted descending
    out: np.ndarray       # (H, R) unit columns: direction written
    inp: np.ndarray       # (H, R) unit columns: direction read from the previous state
    gates: np.ndarray     # (V, R) token gates, each column scaled to max |gate| = 1
    rel_error: float      # ||W - W_hat||_F / ||W||_F

    def summary(self) -> dict:
        return {"rank": int(self.rank), "rel_error": float(self.rel_error),
                "weights": [float(w) for w in self.weights]}

    def sentence(self) -> str:
        return f"rank-{self.rank} CP decomposition of the transition tensor, relative error {_num(self.rel_error)}"

    def plot(self, ax=None, token_names=None):
        from analyses.plot.spectra import plot_token_gates

        return plot_token_gates(self, token_names=token_names, ax=ax)


@dataclass(repr=False)
class RankCurve(Result):
    """Relative reconstruction error against rank."""

    method: str            # "cp" or "tucker"
    ranks: list            # CP: ints; Tucker: (r_out, r_in, r_tok) tuples
    rel_errors: np.ndarray  # (len(ranks),)

    def summary(self) -> dict:
        return {"method": self.method, "ranks": [list(r) if np.ndim(r) else int(r) for r in self.ranks],
                "rel_errors": [float(e) for e in self.rel_errors]}

    def sentence(self) -> str:
        r = self.rank_for(1e-3)
        return (f"{self.method} reconstruction error falls from {_num(self.rel_errors[0])} to "
                f"{_num(self.rel_errors[-1])} over ranks {self.ranks[0]}..{self.ranks[-1]}; "
                + (f"rank {r} reaches 1e-3" if r is not None else "no rank tried reaches 1e-3"))

    def plot(self, ax=None):
        from analyses.plot.spectra import plot_rank_curves

        return plot_rank_curves(self, ax=ax)

    def rank_for(self, rtol: float = 1e-3):
        """Smallest rank whose relative error is <= rtol, or None."""
        for r, e in zip(self.ranks, self.rel_errors, strict=True):
            if e <= rtol:
                return r
        return None


def _check_tensor(W):
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 3 or W.shape[0] != W.shape[1]:
        raise ValueError(f"W must have shape [H, H, V]; got {W.shape}")
    if not np.all(np.isfinite(W)):
        raise ValueError("W contains NaN or inf")
    return W


def cp_decompose(W: np.ndarray, rank: int, n_iter_max: int = 200, n_restarts: int = 2,
                 seed: int = 0, tol: float = 1e-10) -> CPResult:
    """CP decomposition of ``W`` [H, H, V] by ALS (tensorly), best of ``n_restarts`` inits.

    ALS is non-convex: the first start is the SVD initialisation, later ones random.
    """
    import tensorly as tl
    from tensorly.decomposition import parafac

    W = _check_tensor(W)
    if not (isinstance(rank, (int, np.integer)) and rank >= 1):
        raise ValueError(f"rank must be a positive int; got {rank!r}")
    norm = np.linalg.norm(W)
    best = None
    for k in range(max(1, n_restarts)):
        init = "svd" if k == 0 and rank <= min(W.shape) else "random"
        cp = parafac(tl.tensor(W), rank=int(rank), n_iter_max=n_iter_max, init=init, tol=tol,
                     random_state=seed + k, normalize_factors=True)
        err = np.linalg.norm(W - tl.cp_to_tensor(cp)) / (norm if norm > 0 else 1.0)
        if best is None or err < best[0]:
            best = (err, cp)
    err, cp = best
    w = np.asarray(cp.weights, dtype=np.float64).copy()
    a, b, g = (np.asarray(f, dtype=np.float64).copy() for f in cp.factors)
    # move every scale into the weight: unit out/in columns, gates with max |g| = 1 (sign kept)
    for f in (a, b):
        n = np.linalg.norm(f, axis=0)
        n[n == 0] = 1
        f /= n
        w *= n
    gmax = np.abs(g).max(axis=0)
    gmax[gmax == 0] = 1
    g /= gmax
    w *= gmax
    sign = np.sign(w)
    sign[sign == 0] = 1
    w, g = w * sign, g * sign  # positive weights; a sign lives in the gate
    order = np.argsort(-w)
    return CPResult(rank=int(rank), weights=w[order], out=a[:, order], inp=b[:, order],
                    gates=g[:, order], rel_error=float(err))


def cp_rank_curve(W: np.ndarray, max_rank: int = 6, **kw) -> RankCurve:
    """CP relative error for ranks 1..max_rank (small default: ALS costs grow with rank)."""
    ranks = list(range(1, int(max_rank) + 1))
    errs = np.array([cp_decompose(W, r, **kw).rel_error for r in ranks])
    return RankCurve("cp", ranks, errs)


@dataclass(repr=False)
class TuckerResult(Result):
    ranks: tuple           # (r_out, r_in, r_tok)
    core: np.ndarray       # (r_out, r_in, r_tok)
    out: np.ndarray        # (H, r_out) orthonormal
    inp: np.ndarray        # (H, r_in) orthonormal
    tokens: np.ndarray     # (V, r_tok) orthonormal
    rel_error: float

    def summary(self) -> dict:
        return {"ranks": [int(r) for r in self.ranks], "rel_error": float(self.rel_error)}

    def sentence(self) -> str:
        return f"Tucker decomposition with multilinear ranks {tuple(int(r) for r in self.ranks)}, relative error {_num(self.rel_error)}"

    def plot(self, ax=None):
        from analyses.plot.spectra import plot_tucker_core

        return plot_tucker_core(self, ax=ax)


def tucker_decompose(W: np.ndarray, ranks, n_iter_max: int = 100, seed: int = 0) -> TuckerResult:
    """Tucker (HOOI, tensorly) of ``W`` [H, H, V] with multilinear ranks ``(r_out, r_in, r_tok)``."""
    import tensorly as tl
    from tensorly.decomposition import tucker

    W = _check_tensor(W)
    ranks = tuple(int(r) for r in (ranks if np.ndim(ranks) else (ranks,) * 3))
    if len(ranks) != 3 or any(r < 1 or r > n for r, n in zip(ranks, W.shape, strict=True)):
        raise ValueError(f"ranks must be 3 ints in 1..{W.shape}; got {ranks}")
    core, factors = tucker(tl.tensor(W), rank=list(ranks), n_iter_max=n_iter_max,
                           random_state=seed, init="svd")
    err = np.linalg.norm(W - tl.tucker_to_tensor((core, factors))) / max(np.linalg.norm(W), 1e-300)
    return TuckerResult(ranks, np.asarray(core), *(np.asarray(f) for f in factors), float(err))


def tucker_rank_curve(W: np.ndarray, max_rank: int = 6, **kw) -> RankCurve:
    """Tucker relative error with equal ranks ``(r, r, min(r, V))`` for r = 1..max_rank."""
    W = _check_tensor(W)
    H, _, V = W.shape
    ranks = [(r, r, min(r, V)) for r in range(1, min(int(max_rank), H) + 1)]
    errs = np.array([tucker_decompose(W, r, **kw).rel_error for r in ranks])
    return RankCurve("tucker", ranks, errs)


def multilinear_ranks(W: np.ndarray, rtol: float = 1e-6) -> tuple[tuple[int, int, int], list]:
    """Exact multilinear ranks: ranks of the three unfoldings at relative tolerance ``rtol``.

    Returns the ranks and the singular values of each unfolding (for the residual).
    """
    W = _check_tensor(W)
    svs = [np.linalg.svd(np.moveaxis(W, k, 0).reshape(W.shape[k], -1), compute_uv=False)
           for k in range(3)]
    ranks = tuple(int((s > rtol * s[0]).sum()) if s[0] > 0 else 0 for s in svs)
    return ranks, svs


@dataclass(repr=False)
class InteractionResult(Result):
    """Symmetric eigendecomposition of the readout-contracted interaction matrices (module doc)."""

    M: np.ndarray                 # (C, H, V) M_c[j, v] = sum_i W_U[i, c] W[i, j, v]
    eigenvalues: np.ndarray       # (C, H+V) eigenvalues of Q_c, sorted by |.| descending
    state_directions: np.ndarray  # (C, n_top, H) u_k (unit) of the positive eigenvalues
    token_weights: np.ndarray     # (C, n_top, V) v_k (unit) of the positive eigenvalues
    strengths: np.ndarray         # (C, n_top) s_k = 2 * eigenvalue (singular values of M_c)
    effective_rank: np.ndarray    # (C,) number of s_k > rtol * s_1

    def summary(self) -> dict:
        return {"effective_rank": [int(r) for r in self.effective_rank],
                "strengths": [[float(x) for x in row] for row in self.strengths]}

    def sentence(self) -> str:
        return (f"readout-weighted interaction matrices of {len(self.effective_rank)} classes have effective "
                f"ranks {[int(r) for r in self.effective_rank]}")

    def plot(self, ax=None, classes=None):
        from analyses.plot.spectra import plot_interaction_spectrum

        return plot_interaction_spectrum(self, classes=classes, ax=ax)


def interaction_matrices(W: np.ndarray, W_U: np.ndarray, n_top: int = 4,
                         rtol: float = 1e-6) -> InteractionResult:
    """Eigendecompose ``Q_c = 1/2 [[0, M_c], [M_c^T, 0]]`` for every class ``c``.

    Parameters
    ----------
    W : array, (H, H, V)  transition tensor (``transition_tensor``)
    W_U : array, (H, C)   readout
    n_top : int           components kept per class
    rtol : float          relative threshold for ``effective_rank``
    """
    W = _check_tensor(W)
    W_U = np.asarray(W_U, dtype=np.float64)
    H, _, V = W.shape
    if W_U.ndim != 2 or W_U.shape[0] != H:
        raise ValueError(f"W_U must have shape [H={H}, C]; got {W_U.shape}")
    C = W_U.shape[1]
    M = np.einsum("ic,ijv->cjv", W_U, W)
    n_top = int(min(n_top, H, V))
    eigs = np.zeros((C, H + V))
    U = np.zeros((C, n_top, H))
    T = np.zeros((C, n_top, V))
    S = np.zeros((C, n_top))
    eff = np.zeros(C, dtype=np.int64)
    for c in range(C):
        Q = np.zeros((H + V, H + V))
        Q[:H, H:] = 0.5 * M[c]
        Q[H:, :H] = 0.5 * M[c].T
        lam, vec = np.linalg.eigh(Q)
        order = np.argsort(-np.abs(lam), kind="stable")
        eigs[c] = lam[order]
        pos = np.argsort(-lam)[:n_top]  # positive half of the +- pairs
        for k, idx in enumerate(pos):
            u, t = vec[:H, idx], vec[H:, idx]
            nu, nt = np.linalg.norm(u), np.linalg.norm(t)
            U[c, k] = u / nu if nu > 0 else u
            T[c, k] = t / nt if nt > 0 else t
            S[c, k] = 2 * lam[idx]
        s_all = 2 * np.sort(lam)[::-1][: min(H, V)]
        eff[c] = int((s_all > rtol * s_all[0]).sum()) if s_all[0] > 0 else 0
    return InteractionResult(M, eigs, U, T, S, eff)


@dataclass(repr=False)
class DecompositionReport(Result):
    cp_curve: RankCurve
    tucker_curve: RankCurve
    multilinear_ranks: tuple
    cp: CPResult                  # at the smallest rank reaching cp_rtol (or max_rank)
    interactions: InteractionResult | None

    def summary(self) -> dict:
        return {"multilinear_ranks": [int(r) for r in self.multilinear_ranks], "cp": self.cp.summary(),
                "cp_curve": self.cp_curve.summary(), "tucker_curve": self.tucker_curve.summary(),
                "interactions": self.interactions.summary() if self.interactions is not None else None}

    def sentence(self) -> str:
        return (f"transition tensor of multilinear ranks {tuple(int(r) for r in self.multilinear_ranks)}; "
                + self.cp.sentence())

    def plot(self, ax=None):
        from analyses.plot.spectra import plot_rank_curves

        return plot_rank_curves(self.cp_curve, self.tucker_curve, ax=ax)


def decompose_model(model, max_rank: int = 6, cp_rtol: float = 1e-2, n_top: int = 4,
                    normalize: str | None = "frobenius") -> DecompositionReport:
    """Everything above for one bilinear model (small ranks by default, a few seconds at most)."""
    W = model_transition_tensor(model, normalize)
    cp_curve = cp_rank_curve(W, max_rank)
    tk_curve = tucker_rank_curve(W, max_rank)
    r = cp_curve.rank_for(cp_rtol) or max_rank
    cp = cp_decompose(W, r)
    inter = None
    W_U = getattr(model, "W_U", None)
    if W_U is not None:
        inter = interaction_matrices(W, W_U.detach().cpu().double().numpy(), n_top=n_top)
    return DecompositionReport(cp_curve, tk_curve, multilinear_ranks(W)[0], cp, inter)
