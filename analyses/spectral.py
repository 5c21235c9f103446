"""Transition spectra: eigenvalues, cyclic phases, rotation angles, commutators, norm dynamics.

Every bilinear model is, per token, one matrix ``A_v`` (``model.transition_matrices()``,
``[V, H, H]``). What the network computes is invariant to

* a positive scale per token (the update is homogeneous and states are L2-normalized at inference),
* a change of basis of the hidden space,
* whatever happens outside the subspace the states actually reach from ``h_0``.

So this module looks at spectra of ``A_v / rho(A_v)`` restricted to the reachable subspace.

Why divide by the spectral radius ``rho``: it is the one positive scale that makes the dominant
growth rate of every token equal to 1, so eigenvalues that persist over long sequences sit *on*
the unit circle and eigenvalues that decay sit strictly inside, whatever scale the training chose
for each token. ``|det|^(1/H)`` (the other natural choice) is 0 whenever one direction is dead
(every finite-state-machine construction) and mixes the dying directions into the scale.

Which eigenvalues matter: only those of ``A_v`` restricted to the reachable (Krylov) subspace of
``h_0`` -- the rest never act on a state -- and, among those, the ones that survive to the horizon
``L`` of interest: modulus ``>= decay_tol ** (1 / L)`` (with ``L = 500``, ``decay_tol = 1e-2``:
0.9908). A direction below that has shrunk by ``decay_tol`` relative to the dominant one before
the horizon, so its phase cannot affect a prediction at that length.

Expected phases. If a model realises the task's automaton exactly (states equal up to a positive
scale for equal automaton states), the persistent eigenvalues of token ``v`` are roots of unity
whose order divides the *period* of ``v``'s state map (the lcm of the cycle lengths of
``q -> delta(q, v)`` on the minimal automaton; for a group element this is its order; for
``cyclic:m`` and token ``a`` it is ``m / gcd(a, m)``). The phase error of an eigenvalue is its
angular distance to the nearest such root: zero for an exact solution, and a phase error ``eps``
per step accumulates to the decision boundary ``pi / m`` after about ``pi / (m eps)`` steps.

Norm dynamics. Along a random sequence the normalized state grows along the top Lyapunov
direction; direction ``i`` decays relative to it by ``exp(-(g_1 - g_i) L)``. Directions that have
died within the training lengths cannot have been used by the trained model; the first direction
that dies *beyond* them is where a learned near-solution is predicted to break. An exact group
representation has all exponents equal (no break).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from analyses._core import model_transitions, reachable_subspace, variant_of
from analyses._result import Result
from analyses._result import format_number as _num
from workbench.variants import COMPLEX_VARIANTS

def token_periods(automaton) -> np.ndarray:
    """Period of each token's state map on the minimal automaton.

    Parameters
    ----------
    automaton : workbench.tasks.Automaton (anything with ``transitions`` [n_states, n_symbols])

    Returns
    -------
    periods : int array, (n_symbols,)
        lcm of the cycle lengths of ``q -> transitions[q, v]``. Nonzero eigenvalues of a
        representation of ``v`` that realises the automaton are ``periods[v]``-th roots of unity.
    """
    table = np.asarray(automaton.transitions)
    n, k = table.shape
    periods = np.ones(k, dtype=np.int64)
    for v in range(k):
        f = table[:, v]
        lcm = 1
        for q in range(n):
            # walk n steps to land on the cycle, then measure the cycle length
            x = q
            for _ in range(n):
                x = f[x]
            length, y = 1, f[x]
            while y != x:
                y, length = f[y], length + 1
            lcm = lcm * length // math.gcd(lcm, length)
        periods[v] = lcm
    return periods


# ----------------------------------------------------------------------------- pure arithmetic


def normalize_transitions(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Divide each ``A_v`` by its spectral radius (module docstring says why).

    Returns
    -------
    A_norm : array, (V, n, n)
    radius : array, (V,)
        Spectral radii; a token with radius 0 (nilpotent) is left unscaled.
    """
    A = np.asarray(A, dtype=np.float64)
    radius = np.abs(np.linalg.eigvals(A)).max(axis=1)
    scale = np.where(radius > 0, radius, 1.0)
    return A / scale[:, None, None], radius


def commutator_norms(A: np.ndarray) -> np.ndarray:
    """Relative commutator norms ``||A_u A_v - A_v A_u||_F / (||A_u||_F ||A_v||_F)``.

    Scale-free, so it needs no normalization; 0 for every diagonal-class model (shared eigenbasis,
    Prop. 2), and bounded away from 0 where the task's group is non-abelian.

    Parameters
    ----------
    A : array, (V, n, n)

    Returns
    -------
    C : array, (V, V), symmetric, zero diagonal
    """
    A = np.asarray(A, dtype=np.float64)
    V = A.shape[0]
    C = np.zeros((V, V))
    norms = np.linalg.norm(A, axis=(1, 2))
    for u in range(V):  # one row at a time: a [V, V, H, H] temporary is 300 MB at H = 256
        comm = A[u] @ A[u:] - A[u:] @ A[u]
        C[u, u:] = np.linalg.norm(comm, axis=(1, 2))
    C = np.triu(C) + np.triu(C, 1).T
    denom = np.outer(norms, norms)
    return C / np.where(denom > 0, denom, 1.0)


def phase_errors(eigs: np.ndarray, periods: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Signed angular distance of each eigenvalue to the nearest ``periods[v]``-th root of unity.

    Parameters
    ----------
    eigs : complex array, (V, n)
    periods : int array, (V,)
    keep : bool array, (V, n)
        Eigenvalues that matter; the others get NaN.

    Returns
    -------
    err : array, (V, n), radians in [-pi/p, pi/p], NaN where not kept.
    """
    step = 2 * np.pi / np.asarray(periods, dtype=np.float64)[:, None]
    ang = np.angle(eigs)
    err = ang - step * np.round(ang / step)
    return np.where(keep, err, np.nan)


def cyclic_frequencies(eigs_generator: np.ndarray, m: int, keep: np.ndarray) -> list[int]:
    """Frequencies ``k`` (as ``min(k, m-k)``) of the kept eigenvalues of the ``+1`` token.

    An eigenvalue ``exp(2 pi i k / m)`` of the generator of ``Z_m`` means the state carries the
    frequency-``k`` Fourier mode of the residue; a real 2x2 rotation block gives ``k`` and ``m-k``.
    """
    k = np.round(np.angle(eigs_generator[keep]) * m / (2 * np.pi)).astype(int) % m
    return sorted({int(min(x, m - x)) for x in k})


def lyapunov_exponents(
    A: np.ndarray, n_steps: int = 2000, seed: int = 0, token_probs: np.ndarray | None = None,
    reorth_every: int = 8,
) -> np.ndarray:
    """Lyapunov exponents (per step, natural log) of random products of the given matrices.

    QR iteration on ``A_{x_t} ... A_{x_1}`` with tokens drawn i.i.d. (uniform unless
    ``token_probs``), the evaluation distribution of every task here. Exponent ``-inf`` (a direction
    annihilated, as in finite-state-machine constructions) is reported as -700.

    Parameters
    ----------
    A : array, (V, n, n), normalized
    reorth_every : int
        Multiply this many matrices between QR steps (QR costs ~10 matmuls at H = 256). Safe
        because the matrices are normalized to spectral radius 1: within a few steps no direction
        can overflow, and one that underflows is annihilated anyway.

    Returns
    -------
    gamma : array, (n,), descending
    """
    A = np.asarray(A, dtype=np.float64)
    rng = np.random.default_rng(seed)
    V, n, _ = A.shape
    tokens = rng.choice(V, size=n_steps + n_steps // 10 + 1, p=token_probs)
    Q = np.eye(n)
    acc = np.zeros(n)
    k = max(1, int(reorth_every))
    # burn-in: the first steps only rotate Q onto the Lyapunov directions; counting them biases
    # finite-length estimates by O(1/n_steps)
    burn = (n_steps // 10) // k * k
    end = burn + n_steps
    for i in range(0, end, k):
        M = Q
        for v in tokens[i:min(i + k, end)]:
            M = A[v] @ M
        Q, R = np.linalg.qr(M)
        if i >= burn:
            acc += np.log(np.maximum(np.abs(np.diag(R)), 1e-300))
    return np.sort(acc / n_steps)[::-1].clip(min=-700.0)


# ----------------------------------------------------------------------------- result


@dataclass(repr=False)
class SpectraResult(Result):
    """Spectra of the normalized per-token transitions of one model.

    Shapes: V tokens, H hidden units, r = dimension of the reachable subspace.
    """

    radius: np.ndarray                 # (V,) spectral radius of A_v on the reachable subspace
    eigenvalues: np.ndarray            # (V, r) complex, of A_v / radius_v restricted, by modulus desc
    persistent: np.ndarray             # (V, r) bool: modulus >= persist_threshold
    persist_threshold: float           # decay_tol ** (1 / horizon)
    reachable_dim: int                 # r
    invariance_residual: float         # max_v ||A_v Q - Q Q^T A_v Q|| / ||A_v||: is Q invariant?
    commutators: np.ndarray            # (V, V) relative commutator norms on the reachable subspace
    max_commutator: float
    periods: np.ndarray | None         # (V,) expected root-of-unity order per token, when a task is given
    phase_errors: np.ndarray | None    # (V, r) signed radians, NaN for non-persistent eigenvalues
    max_phase_error_reachable: float | None   # max |phase error| over persistent eigenvalues, reachable subspace
    frequencies: list[int] | None      # cyclic tasks: detected frequencies k of the +1 token
    subdominant_ratio: np.ndarray      # (V,) largest normalized modulus below 1 - unit_atol (0 if none)
    token_decay_length: np.ndarray     # (V,) steps until that direction shrinks by decay_tol (inf if none)
    lyapunov: np.ndarray               # (r,) exponents of random products of normalized matrices
    lyapunov_decay_length: np.ndarray  # (r,) ln(1/decay_tol) / (g_1 - g_i), inf where equal
    spectral_break_length: float      # first decay length beyond the training lengths, or phase bound
    phase_break_length: float | None   # pi / (m * max phase error), cyclic-like tasks
    rotation_angles: np.ndarray | None = None   # (V, H/2) radians per 2x2 block (rotation/complex)
    # Persistent subspace (analyses.subspaces): where states live after transients. When set,
    # `max_phase_error` is read there, the reachable number kept beside.
    persistent_subspace: dict | None = None
    persistent_eigenvalues: np.ndarray | None = None   # (V, p) of Qᵀ A_v Q / radius
    max_phase_error_persistent: float | None = None
    max_commutator_persistent: float | None = None
    rotation_moduli: np.ndarray | None = None   # (V, H/2) sqrt(det) per block
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """JSON-safe summary (the ``spectra`` key of ``analyze --json``)."""
        def num(x):
            if x is None:
                return None
            x = float(x)
            return x if math.isfinite(x) else None

        # Phases are read where the state lives (the persistent subspace). Commutators are taken
        # on the reachable space: there they are exactly zero for the diagonal class by
        # construction, while restricting to a subspace that is only approximately invariant adds
        # its own error (~1e-5); the persistent number is kept beside it.
        return {
            "max_phase_error": num(self.max_phase_error),
            "max_commutator": num(self.max_commutator),
            "max_phase_error_reachable": num(self.max_phase_error_reachable),
            "max_commutator_persistent": num(self.max_commutator_persistent),
            "persistent_subspace": self.persistent_subspace,
            "reachable_dim": int(self.reachable_dim),
            "n_persistent": int(self.persistent.sum()),
            "frequencies": self.frequencies,
            "min_subdominant_decay_length": num(np.min(self.token_decay_length)),
            # rate at which the second direction dies relative to the first (0: group-like)
            "lyapunov_gap": num(self.lyapunov[0] - self.lyapunov[1]) if self.lyapunov.size > 1 else 0.0,
            "spectral_break_length": num(self.spectral_break_length),
            "phase_break_length": num(self.phase_break_length),
            "invariance_residual": num(self.invariance_residual),
        }

    @property
    def max_phase_error(self) -> float | None:
        """Max |phase error| where the states live: the persistent subspace when computed,
        else the reachable one (the ``max_phase_error`` of ``summary()``)."""
        if self.persistent_subspace is not None:
            return self.max_phase_error_persistent
        return self.max_phase_error_reachable

    def sentence(self) -> str:
        s = self.summary()
        parts = [f"{s['n_persistent']} persistent eigenvalues on a {s['reachable_dim']}-dim reachable subspace"]
        if s["max_phase_error"] is not None:
            parts.append(f"max phase error {_num(s['max_phase_error'])} rad from the expected roots of unity")
        if s["frequencies"]:
            parts.append(f"frequencies of token 1: {s['frequencies']}")
        parts.append(f"max relative commutator {_num(s['max_commutator'])}")
        brk = self.spectral_break_length
        parts.append("no predicted break length" if math.isinf(brk) else f"predicted break length {_num(brk)} steps")
        text = "; ".join(parts)
        if self.notes:
            text += " (" + "; ".join(self.notes) + ")"
        return text

    def plot(self, ax=None, **kw):
        from analyses.plot.spectra import plot_unit_circle

        return plot_unit_circle(self, ax=ax, **kw)


def analyze_spectra(
    A: np.ndarray,
    h0: np.ndarray | None = None,
    periods: np.ndarray | None = None,
    cyclic_m: int | None = None,
    generator_token: int = 1,
    horizon: int = 500,
    decay_tol: float = 1e-2,
    unit_atol: float = 1e-6,
    reach_rtol: float = 1e-6,
    train_length: int = 10,
    n_lyapunov_steps: int = 1000,
    rotation_blocks: bool = False,
    phase_atol: float = 1e-6,
    seed: int = 0,
) -> SpectraResult:
    """Spectra of per-token transition matrices (pure arrays; `spectra` wires a model and task).

    Parameters
    ----------
    A : array, (V, H, H)
        Per-token transition matrices.
    h0 : array, (H,), optional
        Start state; when given, everything is restricted to its reachable subspace.
    periods : int array, (V,), optional
        Expected root-of-unity order per token (``token_periods(task.automaton.minimize())``);
        enables phase errors.
    cyclic_m : int, optional
        For ``cyclic:m`` / parity: detect the frequencies of token ``generator_token`` (= +1) and
        the phase break length ``pi / (m eps)``.
    horizon, decay_tol : persistence threshold ``decay_tol ** (1 / horizon)`` (module docstring).
    unit_atol : float
        Moduli within this of 1 count as on the unit circle for the sub-dominant ratio.
    reach_rtol : float
        Tolerance of ``reachable_subspace``.
    train_length : int
        Longest training length; decay lengths below it are not counted as predicted breaks.
    phase_atol : float
        Phase errors up to this (radians) are treated as rounding: no phase break is predicted.
    rotation_blocks : bool
        Also report the angle and modulus of each 2x2 diagonal block (rotation, complex_diag).
    """
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 3 or A.shape[1] != A.shape[2]:
        raise ValueError(f"A must have shape [V, H, H]; got {A.shape}")
    if not np.all(np.isfinite(A)):
        raise ValueError("A contains NaN or inf")
    if not (0 < decay_tol < 1):
        raise ValueError(f"decay_tol must be in (0, 1); got {decay_tol}")
    V, H, _ = A.shape
    notes = []
    if h0 is not None:
        Q = reachable_subspace(A, h0, rtol=reach_rtol)
    else:
        Q = np.eye(H)
        notes.append("no h0: using the full hidden space")
    AQ = A @ Q  # two matmuls: a 3-operand einsum here runs as a naive O(V H^4) loop (60 s at H=256)
    B = Q.T @ AQ
    full_norm = np.linalg.norm(A, axis=(1, 2))
    inv_res = np.linalg.norm(AQ - Q @ B, axis=(1, 2)) / np.where(full_norm > 0, full_norm, 1)
    Bn, radius = normalize_transitions(B)
    eig = np.linalg.eigvals(Bn)
    order = np.argsort(-np.abs(eig), axis=1, kind="stable")
    eig = np.take_along_axis(eig, order, axis=1)
    mod = np.abs(eig)
    threshold = decay_tol ** (1.0 / horizon)
    persistent = mod >= threshold - 1e-12

    C = commutator_norms(B)
    max_comm = float(C.max()) if V > 1 else 0.0

    perr = max_perr = None
    if periods is not None:
        periods = np.asarray(periods, dtype=np.int64)
        if periods.shape != (V,):
            raise ValueError(f"periods must have shape ({V},); got {periods.shape}")
        perr = phase_errors(eig, periods, persistent)
        max_perr = float(np.nanmax(np.abs(perr))) if persistent.any() else 0.0

    freqs = phase_break = None
    if cyclic_m is not None:
        if not 0 <= generator_token < V:
            raise ValueError(f"generator_token {generator_token} out of range 0..{V - 1}")
        freqs = cyclic_frequencies(eig[generator_token], cyclic_m, persistent[generator_token])
        if max_perr is not None:
            # below phase_atol the error is rounding, not a learned drift
            phase_break = math.inf if max_perr <= phase_atol else math.pi / (cyclic_m * max_perr)

    # sub-dominant ratio: slowest-decaying direction that is not on the unit circle
    below = np.where(mod < 1 - unit_atol, mod, -1.0)
    sub = below.max(axis=1).clip(min=0.0)
    with np.errstate(divide="ignore"):
        tok_decay = np.where(sub > 0, np.log(decay_tol) / np.log(np.where(sub > 0, sub, 0.5)), 0.0)
    tok_decay = np.where(np.all(mod >= 1 - unit_atol, axis=1), np.inf, tok_decay)

    gamma = lyapunov_exponents(Bn, n_steps=n_lyapunov_steps, seed=seed)
    gap = gamma[0] - gamma
    with np.errstate(divide="ignore"):
        lyap_decay = np.where(gap > 1e-9, np.log(1 / decay_tol) / np.maximum(gap, 1e-300), np.inf)
    # Lyapunov estimates from finite products have O(1/n_steps) noise: a gap below that is "equal"
    beyond = lyap_decay[(lyap_decay > train_length) & np.isfinite(lyap_decay)]
    beyond = beyond[beyond < 0.5 * n_lyapunov_steps * np.log(1 / decay_tol)]
    predicted = float(beyond.min()) if beyond.size else math.inf
    if phase_break is not None:
        predicted = min(predicted, phase_break)

    angles = moduli = None
    if rotation_blocks:
        if H % 2:
            raise ValueError(f"rotation_blocks needs an even hidden size; got H={H}")
        idx = np.arange(H // 2) * 2
        a, b = A[:, idx, idx], A[:, idx + 1, idx]
        angles = np.arctan2(b, a)
        moduli = np.sqrt(np.abs(A[:, idx, idx] * A[:, idx + 1, idx + 1] - A[:, idx, idx + 1] * b))

    return SpectraResult(
        radius=radius, eigenvalues=eig, persistent=persistent, persist_threshold=threshold,
        reachable_dim=Q.shape[1], invariance_residual=float(inv_res.max()), commutators=C,
        max_commutator=max_comm, periods=periods, phase_errors=perr, max_phase_error_reachable=max_perr,
        frequencies=freqs, subdominant_ratio=sub, token_decay_length=tok_decay, lyapunov=gamma,
        lyapunov_decay_length=lyap_decay, spectral_break_length=predicted,
        phase_break_length=phase_break, rotation_angles=angles, rotation_moduli=moduli, notes=notes,
    )


# ----------------------------------------------------------------------------- model + task


def _cyclic_modulus(task) -> int | None:
    spec = getattr(task, "spec", "")
    if spec == "parity":
        return 2
    if spec.startswith("cyclic:"):
        return int(spec.split(":")[1])
    return None


def add_persistent(res: SpectraResult, A: np.ndarray, h0: np.ndarray, periods=None, **kw) -> SpectraResult:
    """Fill the persistent-subspace fields of ``res`` (phases and commutators of ``Qᵀ A_v Q``).

    Every eigenvalue of the restricted, radius-normalized matrices is kept: on the persistent
    subspace nothing is meant to decay, so one that does shows up as a phase/modulus error rather
    than being filtered out. ``**kw`` go to `analyses.subspaces.persistent_subspace_from_matrices`.
    """
    from analyses.subspaces import persistent_subspace_from_matrices

    ps = persistent_subspace_from_matrices(A, h0, **kw)
    Q = ps.basis
    B = np.swapaxes(Q, 0, 1)[None] @ (A @ Q)
    Bn, _ = normalize_transitions(B)
    eig = np.linalg.eigvals(Bn)
    res.persistent_subspace = ps.summary()
    res.persistent_eigenvalues = eig
    res.max_commutator_persistent = float(commutator_norms(B).max()) if B.shape[0] > 1 else 0.0
    if periods is not None and eig.size:
        res.max_phase_error_persistent = float(np.nanmax(np.abs(
            phase_errors(eig, np.asarray(periods), np.ones(eig.shape, dtype=bool)))))
    return res


def spectra(model, task=None, train_length: int = 10, persistent: bool = True,
            persistent_kw: dict | None = None, **kw) -> SpectraResult:
    """Spectra of a bilinear model, with the task's expected phases when ``task`` is given.

    Parameters
    ----------
    model : bilinear model (``transition_matrices()``, ``h0``); baselines raise ValueError.
    task : workbench Task, optional
        Supplies the per-token periods (minimal automaton) and, for ``cyclic:m``/parity, m.
    train_length : int
        Longest training length (decays faster than this are not predicted breaks).
    persistent : bool
        Also compute phases and commutators on the persistent subspace (`add_persistent`); the
        summary then reports those as ``max_phase_error``/``max_commutator``.
    persistent_kw : dict or None, passed to `persistent_subspace_from_matrices`.
    **kw : passed to ``analyze_spectra``.
    """
    A, h0 = model_transitions(model)
    periods = m = None
    if task is not None:
        periods = token_periods(task.automaton.minimize())
        if periods.shape[0] != A.shape[0]:
            raise ValueError(
                f"task {task.spec!r} has {periods.shape[0]} tokens but the model has {A.shape[0]}")
        m = _cyclic_modulus(task)
    variant = variant_of(model)
    res = analyze_spectra(A, h0, periods=periods, cyclic_m=m, train_length=train_length,
                          rotation_blocks=variant in COMPLEX_VARIANTS, **kw)
    if persistent and h0 is not None:
        add_persistent(res, A, h0, periods, **(persistent_kw or {}))
    if getattr(getattr(model, "cfg", None), "additive", False) or variant == "positive_diag":
        res.notes.append("model has an additive input term: spectra describe its linear part only")
    return res


def break_prediction_check(model, task, lengths=(10, 50, 100, 500), n_sequences: int = 256,
                           seed: int = 0, train_length: int = 10) -> dict:
    """Predicted break length against measured final-step accuracy per length.

    Returns
    -------
    dict with ``spectral_break_length`` (float, inf = no break), ``accuracy`` {length: acc},
    ``chance`` and ``consistent`` (bool: accuracy at lengths well below the prediction is high and
    at lengths well above it is low, each judged at half way between chance and 1).
    """
    from workbench import evaluate

    res = spectra(model, task, train_length=train_length)
    acc = evaluate(model, task, list(lengths), n_sequences=n_sequences, seed=seed)
    mid = 0.5 * (1 + task.chance)
    L = res.spectral_break_length
    ok = all((a >= mid) if n < L / 2 else (a < mid) if n > 2 * L else True for n, a in acc.items())
    return {"spectral_break_length": L, "accuracy": acc, "chance": task.chance, "consistent": ok}


def summarize(model, task) -> dict:
    """the ``spectra`` key of ``analyze --json``: ``max_phase_error``, ``max_commutator`` and more (JSON-safe)."""
    return spectra(model, task).summary()
