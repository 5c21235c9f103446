"""Linear probes for the automaton state, activation-patching sweeps, and the state-transplant test.

* **Probes**: closed-form ridge regression from the L2-normalized state (plus a bias) onto the
  one-hot minimal-automaton state, prediction = argmax. Fit on the steps of short sequences
  (inside the training lengths), test at every step of long ones: accuracy against step shows
  whether the state stays linearly decodable beyond training. Closed form because it is exact,
  deterministic and takes milliseconds (an iterative logistic probe adds a learning rate and a
  stopping rule, and nothing a one-hot least-squares fit misses for states that are separable).
* **Patching sweeps** over (hook site x step): run the *corrupted* sequence with the *clean*
  activation written in at one site and one step, and measure at the answer step (the last one)
  the logit difference ``LD = logit[clean label] - logit[corrupted label]``. The effect size is the
  recovered fraction ``(LD_patched - LD_corrupt) / (LD_clean - LD_corrupt)`` (1 = the patch fully
  restores the clean answer, 0 = no effect), plus the fraction of pairs whose prediction becomes
  the clean label; both with percentile-bootstrap intervals over pairs (ratio of resampled means,
  so single pairs with a tiny denominator cannot blow it up).
  All (step, pair) patches of one site run as *one* batched forward: row ``s * B + b`` is pair
  ``b`` patched at step ``steps[s]``, and the hook writes every row at its own step. A 500-step
  sweep is a handful of forwards, not 500.
* **State transplant**: replace ``h_t`` of sequence A by ``h_t`` of sequence B (hook
  ``blocks.0.hook_state`` at step t). If the state *is* the automaton state, the model continues
  from B's state reading A's remaining tokens: later predictions match the automaton run from
  ``q_B(t)`` on ``A[t+1:]``, not A's own labels.

Gotcha (recurrence vs transformers): ``blocks.0.hook_state`` fires once per step and an edit
propagates to every later step; ``blocks.0.hook_out`` fires once after the recurrence and an edit
changes only the readout at that step. So a patch of ``hook_out`` at step t < T has no effect on
the last step's answer, while a patch of ``hook_state`` at any t after the corrupted token fully
restores it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from analyses._result import Result
from analyses._result import format_number as _num

STATE_HOOK = "blocks.0.hook_state"
ONCE_SITES = ("hook_embed", "blocks.0.hook_out", "blocks.0.hook_transition", "blocks.0.hook_gates",
              "blocks.0.hook_angles", "blocks.0.hook_diag", "blocks.0.hook_blocks")
PER_STEP_SITES = (STATE_HOOK,)


# ----------------------------------------------------------------------------- probes


def _features(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    n = np.linalg.norm(X, axis=-1, keepdims=True)
    X = X / np.where(n > 0, n, 1.0)
    return np.concatenate([X, np.ones(X.shape[:-1] + (1,))], -1)


@dataclass
class LinearProbe:
    """Ridge probe: ``argmax([x/|x|, 1] @ weight)``; weight (H+1, n_classes)."""

    weight: np.ndarray
    ridge: float

    def scores(self, X: np.ndarray) -> np.ndarray:
        """(..., H) -> (..., n_classes)."""
        return _features(X) @ self.weight

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(..., H) -> (...,) int."""
        return self.scores(X).argmax(-1)


def fit_probe(X: np.ndarray, y: np.ndarray, n_classes: int, ridge: float = 1e-4) -> LinearProbe:
    """Closed-form ridge fit onto one-hot targets.

    Parameters
    ----------
    X : array, (N, H)
    y : int array, (N,), in 0..n_classes-1
    ridge : float, >= 0   (added to the Gram matrix times its mean diagonal: scale-free)
    """
    X = np.asarray(X)
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"need X [N, H] and y [N]; got {X.shape} and {y.shape}")
    if y.size == 0 or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}; got range {y.min()}..{y.max()}")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0; got {ridge}")
    F = _features(X)
    Y = np.eye(n_classes)[y]
    G = F.T @ F
    G[np.diag_indices_from(G)] += ridge * max(np.trace(G) / G.shape[0], 1e-12)
    return LinearProbe(np.linalg.solve(G, F.T @ Y), ridge)


@dataclass(repr=False)
class ProbeResult(Result):
    """Probe accuracy at every step of the test sequences."""

    steps: np.ndarray            # (T_test,) 1..T_test
    accuracy: np.ndarray         # (T_test,) probe accuracy at each step
    train_accuracy: float
    train_length: int
    accuracy_inside: float       # mean over steps <= train_length
    accuracy_beyond: float       # mean over steps > train_length (nan if none)
    target: str                  # "state" (minimal automaton state) or "label"
    probe: LinearProbe = field(repr=False)

    def summary(self) -> dict:
        """JSON-safe summary: probe accuracy inside and beyond the training lengths."""
        def num(x):
            x = float(x)
            return x if math.isfinite(x) else None

        return {"target": self.target, "train_length": int(self.train_length),
                "train_accuracy": num(self.train_accuracy), "accuracy_inside": num(self.accuracy_inside),
                "accuracy_beyond": num(self.accuracy_beyond), "test_length": int(self.steps[-1])}

    def sentence(self) -> str:
        return (f"a linear probe for the {self.target} trained on steps 1-{self.train_length} reads it with "
                f"accuracy {_num(self.accuracy_inside)} there and {_num(self.accuracy_beyond)} at steps "
                f"{self.train_length + 1}-{int(self.steps[-1])}")

    def plot(self, ax=None, chance=None):
        from analyses.plot.probing import plot_probe_accuracy

        return plot_probe_accuracy(self, ax=ax, chance=chance)


def probe_accuracy_by_step(model, task, train_length: int = 10, test_length: int = 100,
                           n_train: int = 512, n_test: int = 256, ridge: float = 1e-4,
                           target: str = "state", seed: int = 0) -> ProbeResult:
    """Train a state probe on steps 1..train_length, test it at every step up to test_length.

    Parameters
    ----------
    target : "state" (the task's minimal-automaton state) or "label" (the task label)
    """
    from analyses.automata_extraction import collect_states

    if target not in ("state", "label"):
        raise ValueError(f"target must be 'state' or 'label'; got {target!r}")
    if not (1 <= train_length and train_length <= test_length):
        raise ValueError(f"need 1 <= train_length <= test_length; got {train_length}, {test_length}")
    auto = task.automaton.minimize()

    def data(n, length, s):
        batch = task.eval_set(task.valid_length(length), n, seed=s)
        tok = batch.tokens.numpy()
        y = auto.run(tok) if target == "state" else batch.labels.numpy()
        states, _ = collect_states(model, tok)
        return states[:, 1:], np.asarray(y)

    n_cls = auto.n_states if target == "state" else task.n_classes
    Xtr, ytr = data(n_train, train_length, seed)
    Xtr, ytr = Xtr[:, :train_length], ytr[:, :train_length]
    probe = fit_probe(Xtr.reshape(-1, Xtr.shape[-1]), ytr.reshape(-1), n_cls, ridge)
    train_acc = float((probe.predict(Xtr) == ytr).mean())
    Xte, yte = data(n_test, test_length, seed + 1)
    acc = (probe.predict(Xte) == yte).mean(0)
    steps = np.arange(1, acc.shape[0] + 1)
    inside = acc[steps <= train_length]
    beyond = acc[steps > train_length]
    return ProbeResult(steps, acc, train_acc, train_length, float(inside.mean()),
                       float(beyond.mean()) if beyond.size else float("nan"), target, probe)


# ----------------------------------------------------------------------------- patching


def make_patching_pairs(task, n_pairs: int = 32, length: int = 50, position: int | None = None,
                        seed: int = 0):
    """Clean/corrupted pairs that differ in one token and in their final label.

    Parameters
    ----------
    position : int, optional
        0-based index of the changed token (default ``length // 2``); step ``position + 1`` is the
        first step whose state differs.

    Returns
    -------
    clean, corrupt : int arrays, (n_pairs, length)
    clean_label, corrupt_label : int arrays, (n_pairs,)  final labels
    """
    length = task.valid_length(length)
    position = length // 2 if position is None else int(position)
    if not 0 <= position < length:
        raise ValueError(f"position must be in 0..{length - 1}; got {position}")
    rng = np.random.default_rng(seed)
    auto = task.automaton
    clean, corrupt = [], []
    tries = 0
    while sum(len(c) for c in clean) < n_pairs:
        tries += 1
        if tries > 50:
            raise ValueError(f"could not find {n_pairs} pairs whose final labels differ when token "
                             f"{position} of {length} changes (task {task.spec!r}): its automaton "
                             "forgets the difference (synchronises) before the end; accepted: a "
                             "position closer to the end, e.g. position=length - 10")
        base = task.eval_set(length, 4 * n_pairs, seed=seed + tries).tokens.numpy()
        alt = base.copy()
        # modarith alternates residues and operators: swap within the same kind of token
        same_kind = base[:, position]
        shift = rng.integers(1, task.d_vocab, size=base.shape[0])
        alt[:, position] = (same_kind + shift) % task.d_vocab
        ok_tokens = _valid_rows(task, alt, base)
        la = auto.labels(base)[:, -1]
        lb = auto.labels(alt)[:, -1]
        keep = ok_tokens & (la != lb)
        clean.append(base[keep])
        corrupt.append(alt[keep])
    clean = np.concatenate(clean)[:n_pairs]
    corrupt = np.concatenate(corrupt)[:n_pairs]
    return clean, corrupt, auto.labels(clean)[:, -1], auto.labels(corrupt)[:, -1]


def _valid_rows(task, alt: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Rows of ``alt`` whose changed token is of the same kind as before (modarith operators)."""
    names = list(getattr(task, "token_names", []) or [])
    if not names:
        return np.ones(alt.shape[0], bool)
    kind = np.array([n.lstrip("-").isdigit() for n in names])
    return np.all(kind[alt] == kind[base], axis=1)


@dataclass(repr=False)
class PatchingResult(Result):
    """Effects of patching clean activations into corrupted runs, per (site, step)."""

    sites: list[str]
    steps: np.ndarray            # (S,) 1-based steps patched
    logit_diff: np.ndarray       # (n_sites, S, B) LD of each patched pair at the answer step
    clean_ld: np.ndarray         # (B,)
    corrupt_ld: np.ndarray       # (B,)
    recovery: np.ndarray         # (n_sites, S) (mean LD_p - mean LD_c) / (mean LD_clean - mean LD_c)
    recovery_ci: np.ndarray      # (n_sites, S, 2) bootstrap interval (level ``ci``)
    accuracy: np.ndarray         # (n_sites, S) fraction of pairs predicting the clean label
    accuracy_ci: np.ndarray      # (n_sites, S, 2)
    ci: float

    def summary(self) -> dict:
        """JSON-safe summary: recovered fraction per site at the answer step, with its interval."""
        return {"sites": list(self.sites), "steps": [int(s) for s in self.steps],
                "n_pairs": int(self.logit_diff.shape[-1]), "ci": float(self.ci),
                "answer_recovery": {site: float(self.recovery[i, -1]) for i, site in enumerate(self.sites)},
                "answer_recovery_ci": {site: [float(x) for x in self.recovery_ci[i, -1]]
                                       for i, site in enumerate(self.sites)},
                "answer_accuracy": {site: float(self.accuracy[i, -1]) for i, site in enumerate(self.sites)}}

    def sentence(self, changed_step: int | None = None) -> str:
        """The recovered logit difference per site (with its bootstrap interval) at the answer
        step, and one step before and at ``changed_step`` when given."""
        steps = [int(s) for s in self.steps]
        picks = []
        if changed_step is not None:
            picks += [(changed_step - 1, f"step {changed_step - 1} (before the change)"),
                      (changed_step, f"step {changed_step} (the changed token)")]
        picks.append((steps[-1], f"step {steps[-1]} (answer)"))
        parts = []
        for i, site in enumerate(self.sites):
            cells = []
            for step, label in picks:
                if step not in steps:
                    continue
                j = steps.index(step)
                lo, hi = self.recovery_ci[i, j]
                cells.append(f"{label} {_num(self.recovery[i, j])} [{_num(lo)}, {_num(hi)}]")
            parts.append(f"{site}: " + ", ".join(cells))
        return (f"recovered fraction of the clean−corrupted logit difference ({int(round(100 * self.ci))}% "
                f"bootstrap intervals over {self.logit_diff.shape[-1]} pairs) — " + "; ".join(parts))

    def plot(self, ax=None, kind: str = "recovery"):
        from analyses.plot.probing import plot_patching

        return plot_patching(self, ax=ax, kind=kind)


def _answer_logits(model, tokens, fwd_hooks=()):
    import torch

    with torch.no_grad():
        if fwd_hooks:
            logits = model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks))
        else:
            logits = model(tokens)
    return logits[:, -1].double().numpy()


def _site_hook(site: str, clean_act, row_pair, row_step):
    """Hook writing the clean activation of pair ``row_pair[r]`` at step ``row_step[r]`` into row r."""
    import torch

    row_pair = torch.as_tensor(row_pair)
    row_step = torch.as_tensor(row_step)
    if site in PER_STEP_SITES:
        def hook(act, hook):
            t = int(hook.ctx["t"])
            rows = (row_step == t).nonzero().squeeze(1)
            if rows.numel():
                act = act.clone()
                act[rows] = clean_act[row_pair[rows], t - 1].to(act.dtype)
            return act
    else:
        def hook(act, hook):
            act = act.clone()
            r = torch.arange(act.shape[0])
            act[r, row_step - 1] = clean_act[row_pair, row_step - 1].to(act.dtype)
            return act
    return hook


def check_patching_pair(clean, corrupt, clean_label, corrupt_label, steps):
    """Validated inputs of a clean/corrupt patching run: token tensors ``[B, T]``, label arrays
    ``(B,)`` and 1-based steps (default 1..T), each with an error naming the bad value."""
    import torch

    clean = torch.as_tensor(np.asarray(clean), dtype=torch.long)
    corrupt = torch.as_tensor(np.asarray(corrupt), dtype=torch.long)
    if clean.shape != corrupt.shape or clean.ndim != 2:
        raise ValueError(f"clean and corrupt must be equal-shape [B, T]; got {tuple(clean.shape)} "
                         f"and {tuple(corrupt.shape)}")
    B, T = clean.shape
    cl = np.asarray(clean_label, dtype=np.int64)
    co = np.asarray(corrupt_label, dtype=np.int64)
    if cl.shape != (B,) or co.shape != (B,):
        raise ValueError(f"labels must have shape ({B},); got {cl.shape} and {co.shape}")
    steps = np.arange(1, T + 1) if steps is None else np.asarray(steps, dtype=np.int64)
    if steps.size == 0 or steps.min() < 1 or steps.max() > T:
        raise ValueError(f"steps must be a non-empty list in 1..{T}; got {steps.tolist()}")
    return clean, corrupt, cl, co, steps


def patching_sweep(model, clean, corrupt, clean_label, corrupt_label,
                   sites=(STATE_HOOK, "blocks.0.hook_out", "hook_embed"), steps=None,
                   n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                   max_rows: int | None = None) -> PatchingResult:
    """Patch clean activations into corrupted runs at every (site, step); see module docstring.

    Parameters
    ----------
    model : workbench model with ``run_with_cache`` / ``run_with_hooks``
    clean, corrupt : int arrays, (B, T)
    clean_label, corrupt_label : int arrays, (B,)   labels at the answer step (the last)
    sites : hook names; per-step ``blocks.0.hook_state`` or once-firing ``[B, T, ...]`` sites
    steps : 1-based steps to patch (default 1..T)
    n_boot, ci : bootstrap resamples and interval level
    max_rows : rows per batched forward (default: about 32 MB of states per forward)
    """
    import torch

    clean, corrupt, cl, co, steps = check_patching_pair(clean, corrupt, clean_label, corrupt_label, steps)
    B, T = clean.shape
    known = set(ONCE_SITES) | set(PER_STEP_SITES)
    for s in sites:
        if s not in known:
            raise ValueError(f"unknown site {s!r}; accepted: {sorted(known)}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci}")

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            clean_logits, cache = model.run_with_cache(clean, names_filter=lambda n: n in sites)
        missing = [s for s in sites if s not in cache]
        if missing:
            raise ValueError(f"model did not produce {missing} (variant "
                             f"{getattr(model.cfg, 'variant', '?')!r}); pick sites it has")
        ar = np.arange(B)
        clean_ld = clean_logits[:, -1].double().numpy()
        clean_ld = clean_ld[ar, cl] - clean_ld[ar, co]
        cor = _answer_logits(model, corrupt)
        corrupt_ld = cor[ar, cl] - cor[ar, co]
        H = cache[sites[0]].shape[-1]
        if max_rows is None:
            max_rows = max(B, int(32e6 / (8 * T * max(H, 1))))
        per_chunk = max(1, max_rows // B)
        LD = np.zeros((len(sites), steps.size, B))
        ACC = np.zeros((len(sites), steps.size, B))
        for i, site in enumerate(sites):
            act = cache[site]
            for j0 in range(0, steps.size, per_chunk):
                st = steps[j0:j0 + per_chunk]
                rows_tok = corrupt.repeat(st.size, 1)
                row_pair = np.tile(ar, st.size)
                row_step = np.repeat(st, B)
                hook = _site_hook(site, act, row_pair, row_step)
                lg = _answer_logits(model, rows_tok, [(site, hook)]).reshape(st.size, B, -1)
                LD[i, j0:j0 + st.size] = lg[:, ar, cl] - lg[:, ar, co]
                ACC[i, j0:j0 + st.size] = lg.argmax(-1) == cl
    finally:
        model.train(was_training)

    rec, rec_ci, acc, acc_ci = bootstrap_recovery(LD, ACC, clean_ld, corrupt_ld, n_boot, ci, seed)
    return PatchingResult(list(sites), steps, LD, clean_ld, corrupt_ld, rec, rec_ci, acc, acc_ci, ci)


def bootstrap_recovery(LD, ACC, clean_ld, corrupt_ld, n_boot: int = 1000, ci: float = 0.95,
                       seed: int = 0):
    """Recovered fraction and accuracy with percentile-bootstrap intervals over pairs.

    Parameters
    ----------
    LD, ACC : arrays, (..., B)   patched logit differences / 0-1 correctness per pair
    clean_ld, corrupt_ld : arrays, (B,)

    Returns
    -------
    recovery (...), recovery_ci (..., 2), accuracy (...), accuracy_ci (..., 2)
    """
    B = clean_ld.shape[0]
    rng = np.random.default_rng(seed)
    # resampling with replacement == multinomial counts per pair; means become one matmul
    Wt = rng.multinomial(B, np.full(B, 1.0 / B), size=n_boot).T / B  # (B, n_boot)

    def ratio(ld_mean, c_mean, k_mean):
        den = c_mean - k_mean
        return (ld_mean - k_mean) / np.where(np.abs(den) > 1e-12, den, np.nan)

    rec = ratio(LD.mean(-1), clean_ld.mean(), corrupt_ld.mean())
    boot = ratio(LD @ Wt, clean_ld @ Wt, corrupt_ld @ Wt)
    a = (1 - ci) / 2
    rec_ci = np.stack([np.nanquantile(boot, a, axis=-1), np.nanquantile(boot, 1 - a, axis=-1)], -1)
    acc = ACC.mean(-1)
    acc_boot = ACC @ Wt
    acc_ci = np.stack([np.quantile(acc_boot, a, axis=-1), np.quantile(acc_boot, 1 - a, axis=-1)], -1)
    return rec, rec_ci, acc, acc_ci


def sweep_task(model, task, n_pairs: int = 32, length: int = 50, position: int | None = None,
               sites=(STATE_HOOK, "blocks.0.hook_out", "hook_embed"), seed: int = 0,
               **kw) -> PatchingResult:
    """``make_patching_pairs`` + ``patching_sweep`` over every step."""
    clean, corrupt, cl, co = make_patching_pairs(task, n_pairs, length, position, seed)
    return patching_sweep(model, clean, corrupt, cl, co, sites=sites, seed=seed, **kw)


# ----------------------------------------------------------------------------- transplant


@dataclass(repr=False)
class TransplantResult(Result):
    """Does the model continue from the transplanted state?"""

    t_patch: int
    steps: np.ndarray               # (T - t_patch,) steps after the patch
    match_b_continued: float        # fraction of informative predictions = B's state continued
    match_a: float                  # fraction of informative predictions = A's own labels
    control_match_b_continued: float  # the same without the patch (should be low)
    per_step_b: np.ndarray          # (T - t_patch,) match fraction per step (informative only)
    n_informative: int              # (pair, step) cells where the two hypotheses differ

    def summary(self) -> dict:
        """JSON-safe summary of the transplant test."""
        return {"t_patch": int(self.t_patch), "match_b_continued": float(self.match_b_continued),
                "match_a": float(self.match_a), "control_match_b_continued": float(self.control_match_b_continued),
                "n_informative": int(self.n_informative)}

    def sentence(self) -> str:
        # A fraction, not a count: "1 of 2180" would read as one prediction.
        return (f"after transplanting B's state at step {self.t_patch}, a fraction {_num(self.match_b_continued)} of the "
                f"{self.n_informative} informative predictions continue B (control without the patch: "
                f"{_num(self.control_match_b_continued)}; A's own labels: {_num(self.match_a)})")

    def plot(self, ax=None):
        from analyses.plot.probing import plot_transplant

        return plot_transplant(self, ax=ax)


def state_transplant(model, task, n_pairs: int = 256, length: int = 40, t_patch: int = 20,
                     seed: int = 0) -> TransplantResult:
    """Patch ``h_t`` of sequence B into sequence A's run at step ``t_patch`` (module docstring).

    Returns the fraction of A's later predictions that equal the labels of the automaton run from
    B's state at ``t_patch`` on A's remaining tokens, over the (pair, step) cells where that
    prediction differs from A's own label (elsewhere the test cannot tell the two apart).
    """
    import torch

    length = task.valid_length(length)
    if not 1 <= t_patch < length:
        raise ValueError(f"t_patch must be in 1..{length - 1}; got {t_patch}")
    auto = task.automaton
    A = task.eval_set(length, n_pairs, seed=seed).tokens
    Bt = task.eval_set(length, n_pairs, seed=seed + 1).tokens
    qB = auto.run(Bt.numpy())[:, t_patch - 1]
    rest = A.numpy()[:, t_patch:]
    cont = _labels_from(auto, qB, rest)            # (n, T - t)
    own = auto.labels(A.numpy())[:, t_patch:]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _, cacheB = model.run_with_cache(Bt, names_filter=lambda n: n == STATE_HOOK)
            hB = cacheB[STATE_HOOK][:, t_patch - 1]

            def hook(act, hook):
                return hB.to(act.dtype).clone() if int(hook.ctx["t"]) == t_patch else act

            patched = model.run_with_hooks(A, fwd_hooks=[(STATE_HOOK, hook)])
            plain = model(A)
    finally:
        model.train(was_training)
    pred = patched.argmax(-1).numpy()[:, t_patch:]
    pred0 = plain.argmax(-1).numpy()[:, t_patch:]
    inf = cont != own
    n_inf = int(inf.sum())
    if n_inf == 0:
        raise ValueError("no (pair, step) where B's continued state and A's labels differ; "
                         "use more pairs or a longer sequence")
    per_step = np.where(inf.sum(0) > 0, ((pred == cont) & inf).sum(0) / np.maximum(inf.sum(0), 1), np.nan)
    return TransplantResult(
        t_patch, np.arange(t_patch + 1, length + 1), float((pred == cont)[inf].mean()),
        float((pred == own)[inf].mean()), float((pred0 == cont)[inf].mean()), per_step, n_inf)


def _labels_from(automaton, starts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Labels after each token, starting from per-row states. (B,), (B, T) -> (B, T)."""
    return np.asarray(automaton.outputs)[automaton.run(tokens, start=np.asarray(starts))]
