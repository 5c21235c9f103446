"""State drift: do the states for one automaton state stay put as sequences get long?

A model that is an exact representation (or an exact automaton) puts every sequence that ends in
automaton state `q` at the same normalized hidden state, at every length. A trained model is only
close to one: each token's matrix misses its ideal by a little (measured on a trained S3
model: singular values 1.005 / 0.995 where both should be 1, rotation angles off by 1e-3 of a
turn), and those errors add up along a sequence. The states for `q` then wander away from where
they sat at short lengths, by a diffusion (`~ t^0.5`) when the errors have random signs or a
systematic walk (`~ t`) when they share one, until they cross into another state's region and
the readout fails. This module measures that walk and predicts the length at which it breaks.

`drift_from_matrices` runs the normalized dynamics `h_t = A_{x_t} h_{t-1} / ||.||` (numpy,
float64) on sequences drawn from the task, tracks the true automaton state `q_t`, and:

1. takes a *reference* position `c_q` per automaton state: the mean unit state over steps
   `reference_steps` (after the first transient, inside the range a model is trained on);
2. at checkpoint steps (doubling up to `max_length`) measures `d_t = ||h_t - c_{q_t}||` over the
   sequences: mean, 95th percentile and maximum;
3. fits `d95(t) = a t^p` (least squares in log-log over the checkpoints after the reference
   window) and predicts the break length as the `t` where `d95` reaches the *margin*, half the
   smallest distance between two reference positions (a geometric proxy for the readout's
   tolerance; the readout itself is not used, so the prediction is checkable against measured
   accuracy).

No growth (`p` below `min_exponent`, or every distance below `floor`) predicts no break
(`inf`). Everything measured is reported: the distances, the fit and its residual, the margin.

Shapes: K checkpoints, Q automaton states, H hidden size, V tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from analyses._result import Result
from analyses._core import model_transitions, normalized_step

__all__ = ["DriftResult", "checkpoint_steps", "drift_from_matrices", "state_drift", "summarize"]


def checkpoint_steps(start: int, max_length: int) -> np.ndarray:
    """Doubling steps ``start, 2*start, ...`` up to and including ``max_length`` (int array [K])."""
    if start < 1 or max_length < start:
        raise ValueError(f"need 1 <= start <= max_length, got start={start}, max_length={max_length}")
    steps = []
    t = int(start)
    while t < max_length:
        steps.append(t)
        t *= 2
    steps.append(int(max_length))
    return np.array(sorted(set(steps)), dtype=np.int64)


@dataclass(repr=False)
class DriftResult(Result):
    """The measured walk of the states away from their short-length positions, and its forecast."""

    steps: np.ndarray                  # [K] checkpoint steps
    mean_distance: np.ndarray          # [K] mean over sequences of ||h_t - c_{q_t}||
    p95_distance: np.ndarray           # [K] 95th percentile
    max_distance: np.ndarray           # [K]
    margin: float                      # half the smallest distance between two reference positions
    exponent: float                    # p of the fit d95 = a t^p (nan if not fitted)
    coefficient: float                 # a of the fit (nan if not fitted)
    fit_residual: float                # rms of the log-log fit (natural log units)
    predicted_break_length: float      # t where the fit reaches the margin (inf: no growth)
    reference_steps: tuple[int, int]   # steps [lo, hi) that define the reference positions
    n_sequences: int
    n_reference_states: int            # automaton states seen in the reference window
    unreferenced_fraction: float       # share of measured states whose q had no reference
    notes: list[str] = field(default_factory=list)

    @property
    def grows(self) -> bool:
        return math.isfinite(self.predicted_break_length)

    def sentence(self) -> str:
        d_last = self.p95_distance[-1]
        head = (f"states drift from their step {self.reference_steps[0]}-{self.reference_steps[1]} positions by "
                f"{d_last:.3g} (95th percentile) at step {int(self.steps[-1])}, margin {self.margin:.3g}")
        if not self.grows:
            return head + "; no growth measured, no break predicted"
        return (head + f"; growth ~ t^{self.exponent:.2f} (fit rms {self.fit_residual:.2g} in log units), "
                f"predicted to reach the margin near length {self.predicted_break_length:,.0f}")

    def summary(self) -> dict:
        """JSON-safe summary (the ``drift`` key of ``analyze --json``)."""
        def num(x):
            x = float(x)
            return x if math.isfinite(x) else None

        return {
            "steps": [int(t) for t in self.steps],
            "mean_distance": [float(x) for x in self.mean_distance],
            "p95_distance": [float(x) for x in self.p95_distance],
            "max_distance": [float(x) for x in self.max_distance],
            "margin": num(self.margin),
            "exponent": num(self.exponent),
            "coefficient": num(self.coefficient),
            "fit_residual": num(self.fit_residual),
            "predicted_break_length": num(self.predicted_break_length),
            "reference_steps": list(self.reference_steps),
            "n_sequences": int(self.n_sequences),
            "unreferenced_fraction": float(self.unreferenced_fraction),
            "summary": self.sentence(),
        }

    def plot(self, ax=None, title: str | None = None):
        from analyses.plot.drift import plot_drift

        return plot_drift(self, ax=ax, title=title)


def drift_from_matrices(A, h0, tokens, states, reference_steps: tuple[int, int] = (10, 50),
                        checkpoint_start: int = 100, min_exponent: float = 0.1,
                        floor: float = 1e-9) -> DriftResult:
    """Drift of the normalized states of per-token matrices on given sequences (module docstring).

    Parameters
    ----------
    A : float array [V, H, H]
    h0 : float array [H], non-zero
    tokens : int array [N, T]
        Sequences (T = the longest step measured).
    states : int array [N, T]
        True automaton state after each prefix (`automaton.run(tokens)`).
    reference_steps : (lo, hi)
        Steps (1-based, hi exclusive) whose states define the reference positions.
    checkpoint_start : int
        First checkpoint (then doubling up to T); must be >= hi.
    min_exponent : float
        Fitted exponents below this count as no growth.
    floor : float
        Distances all below this count as no growth (an exact model sits at rounding level).
    """
    A = np.asarray(A, dtype=np.float64)
    h0 = np.asarray(h0, dtype=np.float64).reshape(-1)
    tokens = np.asarray(tokens)
    states = np.asarray(states)
    if A.ndim != 3 or A.shape[1] != A.shape[2] or h0.shape != (A.shape[1],):
        raise ValueError(f"need A [V, H, H] and h0 [H]; got {A.shape} and {h0.shape}")
    if tokens.ndim != 2 or tokens.shape != states.shape:
        raise ValueError(f"tokens and states must both be [N, T]; got {tokens.shape} and {states.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= A.shape[0]):
        raise ValueError(f"tokens must lie in [0, {A.shape[0]}), got {tokens.min()}..{tokens.max()}")
    lo, hi = (int(x) for x in reference_steps)
    N, T = tokens.shape
    if not 1 <= lo < hi <= checkpoint_start <= T:
        raise ValueError(f"need 1 <= reference lo < hi <= checkpoint_start <= sequence length; got "
                         f"reference_steps={reference_steps}, checkpoint_start={checkpoint_start}, length {T}")
    n0 = np.linalg.norm(h0)
    if not (np.isfinite(n0) and n0 > 0):
        raise ValueError(f"h0 must be a finite non-zero vector, got norm {n0}")
    steps = checkpoint_steps(checkpoint_start, T)
    wanted = set(steps.tolist())
    n_q = int(states.max()) + 1
    ref_sum = np.zeros((n_q, A.shape[1]))
    ref_count = np.zeros(n_q)
    at_steps = {}
    h = np.tile(h0 / n0, (N, 1))
    for t in range(1, T + 1):
        h = normalized_step(A, tokens[:, t - 1], h)
        if lo <= t < hi:
            np.add.at(ref_sum, states[:, t - 1], h)
            np.add.at(ref_count, states[:, t - 1], 1.0)
        if t in wanted:
            at_steps[t] = h.copy()
    seen = ref_count > 0
    centroids = np.where(seen[:, None], ref_sum / np.maximum(ref_count, 1)[:, None], np.nan)
    notes = []
    ids = np.flatnonzero(seen)
    if len(ids) >= 2:
        C = centroids[ids]
        dist = np.linalg.norm(C[:, None] - C[None], axis=-1)
        margin = float(dist[~np.eye(len(ids), dtype=bool)].min()) / 2
    else:
        margin = math.nan
        notes.append("fewer than two automaton states in the reference window: no margin")
    mean_d, p95_d, max_d, unref = [], [], [], 0
    for t in steps:
        q = states[:, t - 1]
        ok = seen[q]
        unref += int((~ok).sum())
        d = np.linalg.norm(at_steps[int(t)][ok] - centroids[q[ok]], axis=1) if ok.any() else np.array([np.nan])
        mean_d.append(float(np.mean(d)))
        p95_d.append(float(np.percentile(d, 95)))
        max_d.append(float(np.max(d)))
    mean_d, p95_d, max_d = np.array(mean_d), np.array(p95_d), np.array(max_d)

    exponent = coefficient = math.nan
    residual = math.nan
    predicted = math.inf
    good = np.isfinite(p95_d) & (p95_d > floor)
    if good.sum() >= 2:
        x, y = np.log(steps[good].astype(float)), np.log(p95_d[good])
        p, loga = np.polyfit(x, y, 1)
        exponent, coefficient = float(p), float(math.exp(loga))
        residual = float(np.sqrt(np.mean((loga + p * x - y) ** 2)))
        if exponent >= min_exponent and math.isfinite(margin) and margin > 0:
            predicted = float((margin / coefficient) ** (1 / exponent))
    elif not good.any():
        notes.append(f"every distance is below floor={floor:g}: the states do not move")
    return DriftResult(steps=steps, mean_distance=mean_d, p95_distance=p95_d, max_distance=max_d, margin=margin,
                       exponent=exponent, coefficient=coefficient, fit_residual=residual,
                       predicted_break_length=predicted, reference_steps=(lo, hi), n_sequences=N,
                       n_reference_states=int(seen.sum()),
                       unreferenced_fraction=unref / (N * len(steps)), notes=notes)


def state_drift(model, task, max_length: int = 2000, n_sequences: int = 64, seed: int = 0, **kw) -> DriftResult:
    """Drift of a bilinear model's states on sequences sampled from ``task`` (module docstring).

    Parameters
    ----------
    model : bilinear model (`transition_matrices()` and `h0`).
    task : a `workbench.tasks.Task`: its sampler draws the tokens, its automaton gives `q_t`.
    max_length : int
        Longest step measured (checkpoints double from `checkpoint_start` up to it).
    n_sequences, seed : int
    **kw : passed to `drift_from_matrices`.
    """
    import torch


    if getattr(getattr(model, "cfg", None), "additive", False):
        raise ValueError("model has additive terms (additive=True): its states are not h_t = A(x_t) h_{t-1}; "
                         "drift is measured for linear bilinear models only")
    A, h0 = model_transitions(model)
    if h0 is None:
        raise ValueError("model has no h0: drift needs a start state")
    gen = torch.Generator().manual_seed(int(seed))
    tokens = task.sample_tokens(int(n_sequences), int(max_length), gen)
    states = task.automaton.run(tokens)
    return drift_from_matrices(A, h0, tokens.numpy(), states.numpy(), **kw)


def summarize(model, task) -> dict:
    """The ``drift`` key of ``analyze --json``."""
    return state_drift(model, task).summary()
