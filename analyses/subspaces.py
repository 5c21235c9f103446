"""The persistent subspace: where a bilinear model's normalized states live after transients die.

A trained model need not be an exact representation on everything its short words reach: the
identity initialisation and non-invertible parts leave directions that the dynamics shrink
relative to the dominant ones. Restricting the transition matrices to the span of short-word
orbit states keeps those directions, and the restricted matrices then do not form a
representation even when the model generalises perfectly. The group (or automaton) acts on the
*persistent* part: the span of states seen after a burn-in.

`persistent_subspace_from_matrices` runs the normalized dynamics `h_t = A_{x_t} h_{t-1} /
||.||` on random token sequences from `h0`, stacks the states at steps `burn_in .. burn_in +
n_steps`, and takes their principal directions. Its dimension is cut at the largest relative
first gap of at least `min_gap` (5) in the singular values among cuts whose first dropped value
is below `rtol` (0.2, relative to the largest): an exact construction has a floor at rounding level (1e-15) and the cut is exact; a
trained model has a floor at the level of its residual wobble (measured: about 2e-2 on trained zoo
models), below a gap of a factor 30-50.

Everything is reported, never hidden: the singular values, the gap, the invariance residual
`max_v ||A_v Q - Q Qᵀ A_v Q|| / ||A_v Q||` (0 iff the subspace is exactly invariant), the
dimension of the short-word (Krylov) span and the transient part (its dimension minus the
persistent one), and the largest spectral radius of the scale-normalized matrices on the
orthogonal complement with the decay length it implies.

For an exact construction the persistent subspace equals the reachable subspace and the
invariance residual is at rounding level.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analyses._result import Result
from analyses._core import model_transitions, normalized_step, reachable_subspace

__all__ = ["PersistentSubspace", "persistent_subspace_from_matrices", "persistent_subspace", "late_states"]


def late_states(A: np.ndarray, h0: np.ndarray, burn_in: int = 200, n_steps: int = 100,
                n_sequences: int = 64, seed: int = 0, token_probs: np.ndarray | None = None) -> np.ndarray:
    """Unit states of the normalized dynamics at steps burn_in+1 .. burn_in+n_steps.

    Parameters
    ----------
    A : float array [V, H, H]
    h0 : float array [H], non-zero
    burn_in, n_steps, n_sequences : int
    seed : int
    token_probs : float array [V] or None (uniform)

    Returns
    -------
    states : float array [n_sequences * n_steps, H]
    """
    A = np.asarray(A, dtype=np.float64)
    h0 = np.asarray(h0, dtype=np.float64).reshape(-1)
    if A.ndim != 3 or A.shape[1] != A.shape[2] or h0.shape != (A.shape[1],):
        raise ValueError(f"need A [V, H, H] and h0 [H]; got {A.shape} and {h0.shape}")
    for nm, val in (("burn_in", burn_in), ("n_steps", n_steps), ("n_sequences", n_sequences)):
        if int(val) != val or val < (0 if nm == "burn_in" else 1):
            raise ValueError(f"{nm} must be an integer >= {0 if nm == 'burn_in' else 1}, got {val!r}")
    n0 = np.linalg.norm(h0)
    if not (np.isfinite(n0) and n0 > 0):
        raise ValueError(f"h0 must be a finite non-zero vector, got norm {n0}")
    rng = np.random.default_rng(seed)
    V = A.shape[0]
    toks = rng.choice(V, size=(burn_in + n_steps, n_sequences), p=token_probs)
    h = np.tile(h0 / n0, (n_sequences, 1))
    out = np.empty((n_steps, n_sequences, A.shape[1]))
    for t in range(burn_in + n_steps):
        h = normalized_step(A, toks[t], h)
        if t >= burn_in:
            out[t - burn_in] = h
    return out.reshape(-1, A.shape[1])


@dataclass(repr=False)
class PersistentSubspace(Result):
    """Where the states live after transients: basis, its evidence, and the transient part.

    Shapes: H hidden size, r persistent dimension.
    """

    basis: np.ndarray                  # [H, r] orthonormal Q
    singular_values: np.ndarray        # [min(N, H)] of the late unit states, relative to the largest
    rtol: float                        # dropped directions are below rtol (relative)
    gap: float                         # s_r / s_{r+1} at the cut (inf if nothing dropped / floor 0)
    invariance_residual: float         # max_v ||A_v Q - Q Qᵀ A_v Q||_F / ||A_v Q||_F
    reachable_dimension: int           # dimension of the short-word (Krylov) span of h0
    transient_radius: float            # max_v spectral radius of A_v/c_v on the complement (0 if none)
    transient_decay_length: float      # steps for that direction to shrink by decay_tol (inf if radius >= 1)
    decay_tol: float
    burn_in: int
    n_states: int

    @property
    def dimension(self) -> int:
        return int(self.basis.shape[1])

    @property
    def transient_dimension(self) -> int:
        """Short-word span dimension minus persistent dimension."""
        return max(0, self.reachable_dimension - self.dimension)

    def summary(self) -> dict:
        """JSON-safe summary (kept under ``persistent_subspace`` in the spectra and representation keys)."""
        def num(x):
            x = float(x)
            return x if math.isfinite(x) else None

        r, sv = self.dimension, self.singular_values
        return {
            "dimension": r,
            "reachable_dimension": int(self.reachable_dimension),
            "transient_dimension": self.transient_dimension,
            "invariance_residual": num(self.invariance_residual),
            "gap": num(self.gap),
            "last_kept": num(sv[r - 1]) if r >= 1 else None,
            "first_dropped": num(sv[r]) if r < len(sv) else None,
            "transient_radius": num(self.transient_radius),
            "transient_decay_length": num(self.transient_decay_length),
            "burn_in": int(self.burn_in),
        }

    def sentence(self) -> str:
        return (f"states settle in a {self.dimension}-dim persistent subspace after {int(self.burn_in)} steps "
                f"(short words reach {int(self.reachable_dimension)} dims; gap {self.gap:.3g}, "
                f"invariance residual {self.invariance_residual:.1e})")

    def plot(self, ax=None):
        from analyses.plot.spectra import plot_persistent_subspace

        return plot_persistent_subspace(self, ax=ax)


def _cut(sv: np.ndarray, rtol: float, min_gap: float) -> tuple[int, float]:
    """Persistent dimension from relative singular values (descending).

    Cuts allowed: those whose first dropped value is <= rtol. The first (smallest) allowed cut with
    a gap s_r / s_{r+1} >= min_gap wins: the dominant cluster, not a second gap deeper in a floor of
    already-dead directions. Without such a cut, the allowed cut with the largest gap.
    """
    n = len(sv)
    if n == 0:
        return 0, math.inf
    cands = [r for r in range(1, n) if sv[r] <= rtol]
    if not cands:
        return n, math.inf
    gaps = [sv[r - 1] / sv[r] if sv[r] > 0 else math.inf for r in cands]
    for r, g in zip(cands, gaps, strict=True):
        if g >= min_gap:
            return r, float(g)
    i = int(np.argmax(gaps))
    return cands[i], float(gaps[i])


def persistent_subspace_from_matrices(A, h0, burn_in: int = 200, n_steps: int = 50, n_sequences: int = 64,
                                      rtol: float = 0.2, min_gap: float = 5.0, reach_rtol: float = 1e-6, decay_tol: float = 1e-2,
                                      seed: int = 0) -> PersistentSubspace:
    """Persistent subspace of per-token matrices started from h0 (module docstring).

    Parameters
    ----------
    A : float array [V, H, H]
    h0 : float array [H]
    burn_in : int
        Steps discarded before states are collected (transients decay during them).
    n_steps, n_sequences : int
        States collected: n_sequences random sequences, n_steps steps each.
    rtol : float in (0, 1)
        A direction can be dropped only if its singular value is <= rtol x the largest.
    min_gap : float
        Among those cuts, the first with s_r / s_{r+1} >= min_gap is taken (else the largest gap).
    reach_rtol : float
        Tolerance of the short-word (Krylov) span used for the transient dimension.
    decay_tol : float in (0, 1)
        Decay length = steps for the slowest transient to shrink by this factor.
    seed : int

    Returns
    -------
    PersistentSubspace
    """
    if not 0 < rtol < 1:
        raise ValueError(f"rtol must be in (0, 1), got {rtol}")
    if not 0 < decay_tol < 1:
        raise ValueError(f"decay_tol must be in (0, 1), got {decay_tol}")
    A = np.asarray(A, dtype=np.float64)
    if not np.all(np.isfinite(A)):
        raise ValueError("A contains NaN or inf")
    S = late_states(A, h0, burn_in, n_steps, n_sequences, seed)
    _, s, Vt = np.linalg.svd(S, full_matrices=False)
    sv = s / s[0] if s[0] > 0 else s
    r, gap = _cut(sv, rtol, min_gap)
    Q = Vt[:r].T
    AQ = A @ Q
    B = np.swapaxes(Q, 0, 1)[None] @ AQ
    den = np.linalg.norm(AQ, axis=(1, 2))
    inv = float(np.max(np.linalg.norm(AQ - Q[None] @ B, axis=(1, 2)) / np.where(den > 0, den, 1.0))) if r else 0.0
    reach = reachable_subspace(A, h0, rtol=reach_rtol).shape[1]
    H = A.shape[1]
    radius = 0.0
    if 0 < r < H:
        sign, logdet = np.linalg.slogdet(B)
        scales = np.where(sign != 0, np.exp(logdet / r), np.abs(np.linalg.eigvals(B)).max(axis=1))
        scales = np.where(scales > 0, scales, 1.0)
        U, _, _ = np.linalg.svd(Q, full_matrices=True)
        Qp = U[:, r:]
        C = np.swapaxes(Qp, 0, 1)[None] @ A @ Qp[None] / scales[:, None, None]
        radius = float(np.max(np.abs(np.linalg.eigvals(C))))
    decay = math.log(decay_tol) / math.log(radius) if 0 < radius < 1 else (0.0 if radius == 0 else math.inf)
    return PersistentSubspace(basis=Q, singular_values=sv, rtol=rtol, gap=gap, invariance_residual=inv,
                              reachable_dimension=int(reach), transient_radius=radius,
                              transient_decay_length=float(decay), decay_tol=decay_tol, burn_in=int(burn_in),
                              n_states=int(S.shape[0]))


def persistent_subspace(model, task=None, **kw) -> PersistentSubspace:
    """Persistent subspace of a bilinear model (its `transition_matrices()` and `h0`).

    ``task`` is accepted for symmetry with the other analyses (tokens are drawn uniformly, the
    distribution of every task here); ``**kw`` go to `persistent_subspace_from_matrices`.
    """
    A, h0 = model_transitions(model)
    if h0 is None:
        raise ValueError("model has no h0: the persistent subspace needs a start state")
    return persistent_subspace_from_matrices(A, h0, **kw)
