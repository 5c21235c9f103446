"""Attribution patching over (hook site x step): the first-order estimate of activation patching.

Activation patching (``analyses.probing.patching_sweep``) runs the *corrupted* sequence once per
(site, step) with the *clean* activation written in, and reads the logit difference
``LD = logit[clean label] - logit[corrupted label]`` at the answer step (the last one).
Attribution patching replaces those runs by one forward and one backward pass of the corrupted
sequence: for every site ``a`` and step ``t``

    delta LD(a, t)  ~=  (a_clean[t] - a_corrupt[t]) . dLD/da[t]   (gradient on the corrupted run)

summed over the activation's own dimensions and averaged over pairs, then reported on the
patching sweep's scale, the recovered fraction ``delta LD / (mean LD_clean - mean LD_corrupt)``.

For the per-step site ``blocks.0.hook_state`` the gradient is the *total* one, through the
readout at every later step and through every later step of the recurrence, which is what an
edit of h_t does (edits propagate); the model's backward hooks deliver it per step, on the fast
path too (``docs/hooks.md``). So a (site x step) map costs one backward instead of ``S x n_sites``
patched forwards.

Metric: the logit difference of the clean against the corrupted label, the standard choice,
because it is linear in the logits (the estimate then only linearises the network, not the
metric). Probabilities or accuracy saturate: where a patch fully restores the clean answer their
gradient on the corrupted run is near zero and the linear estimate says "no effect".

Where it is exact and where not: the estimate is exact wherever the activations do not differ
(before the changed token) and wherever the metric does not depend on the site (``hook_out``
before the last step: 0 in both). Elsewhere it linearises a rotation of the state by the changed
token, so its *size* can be off (a unit state moved far along the sphere) while its *ranking* of
(site, step) cells, which is what a researcher reads off a patching map, is what
``spearman`` measures against the real sweep.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from analyses._result import Result
from analyses.probing import (check_patching_pair, ONCE_SITES, PER_STEP_SITES, STATE_HOOK, PatchingResult,
                              make_patching_pairs, patching_sweep)

__all__ = ["AttributionResult", "attribution_patching", "attribute_task", "compare", "spearman",
           "DEFAULT_SITES"]

DEFAULT_SITES = (STATE_HOOK, "blocks.0.hook_out", "hook_embed")
METRIC = "logit difference (clean label - corrupted label) at the last step"


def spearman(a, b) -> float:
    """Spearman rank correlation of two equal-shape arrays (flattened; ties get mean ranks)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"need equal sizes, got {a.size} and {b.size}")
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")   # a constant map has no ranking
    return float(spearmanr(a, b).statistic)


@dataclass(repr=False)
class AttributionResult(Result):
    """Attribution-patching estimates per (site, step), optionally beside the real sweep."""

    sites: list[str]
    steps: np.ndarray                    # [S] 1-based steps
    estimate_ld: np.ndarray              # [n_sites, S, B] estimated LD change per pair
    estimate: np.ndarray                 # [n_sites, S] estimated recovered fraction (pair mean)
    clean_ld: np.ndarray                 # [B] LD of the clean runs
    corrupt_ld: np.ndarray               # [B] LD of the corrupted runs
    metric: str = field(default=METRIC, repr=False)
    patching: PatchingResult | None = field(default=None, repr=False)   # the sweep compared against
    spearman: float | None = None        # rank correlation with patching.recovery, all cells,
    #                                      cells within noise_floor of 0 tied at 0 in both maps
    spearman_raw: float | None = None    # the same without the floor
    spearman_by_site: dict | None = None  # floored, per site (nan where a map is constant)
    max_abs_error: float | None = None   # max |estimate - patching.recovery| over cells
    noise_floor: float | None = None     # |recovered fraction| counted as "no effect"
    largest_floored: float | None = None  # largest |value| the floor set to 0 (either map)

    def top_cells(self, k: int = 5) -> list[tuple[str, int, float]]:
        """The k (site, step, estimate) cells with the largest estimated recovery."""
        flat = np.argsort(-self.estimate, axis=None)[:k]
        out = []
        for f in flat:
            i, j = np.unravel_index(f, self.estimate.shape)
            out.append((self.sites[i], int(self.steps[j]), float(self.estimate[i, j])))
        return out

    def summary(self) -> dict:
        def num(x):
            return None if x is None or not math.isfinite(float(x)) else float(x)

        d = {
            "metric": self.metric,
            "sites": list(self.sites),
            "n_steps": int(self.steps.size),
            "n_pairs": int(self.clean_ld.size),
            "clean_ld": float(self.clean_ld.mean()),
            "corrupt_ld": float(self.corrupt_ld.mean()),
            "top_cells": [{"site": s, "step": t, "estimate": e} for s, t, e in self.top_cells(3)],
        }
        if self.patching is not None:
            d["spearman"] = num(self.spearman)
            d["spearman_raw"] = num(self.spearman_raw)
            d["spearman_by_site"] = {k: num(v) for k, v in (self.spearman_by_site or {}).items()}
            d["max_abs_error"] = num(self.max_abs_error)
            d["noise_floor"] = num(self.noise_floor)
            d["largest_floored"] = num(self.largest_floored)
        return d

    def sentence(self) -> str:
        site, step, est = self.top_cells(1)[0]
        s = (f"attribution patching over {len(self.sites)} sites x {self.steps.size} steps "
             f"({self.clean_ld.size} pairs, {self.metric}): largest estimated recovery "
             f"{est:.2f} at {site} step {step}")
        if self.patching is not None:
            s += (f"; ranks the cells like activation patching with Spearman "
                  f"{self.spearman:.3f} (largest |estimate - patched| {self.max_abs_error:.2f})")
        return s

    def plot(self, ax=None):
        from analyses.plot.attribution import plot_attribution

        return plot_attribution(self, ax=ax)


def _answer_ld(logits, cl, co):
    ar = np.arange(cl.size)
    lg = logits[:, -1].detach().double().cpu().numpy()
    return lg[ar, cl] - lg[ar, co]


def attribution_patching(model, clean, corrupt, clean_label, corrupt_label,
                         sites=DEFAULT_SITES, steps=None,
                         reference: PatchingResult | None = None,
                         noise_floor: float = 1e-4) -> AttributionResult:
    """Linear estimate of clean -> corrupted activation patching at every (site, step).

    Parameters
    ----------
    model : workbench model (``run_with_cache``, ``get_caching_hooks``, backward hooks)
    clean, corrupt : int arrays [B, T]
    clean_label, corrupt_label : int arrays [B], labels at the answer step (the last)
    sites : hook names, per-step ``blocks.0.hook_state`` or once-firing ``[B, T, ...]`` sites
    steps : 1-based steps to report (default 1..T)
    reference : a ``PatchingResult`` of the same pairs, sites and steps; if given, its recovery
        is compared (``spearman``, ``spearman_by_site``, ``max_abs_error``; see :func:`compare`)
    noise_floor : recovered fractions treated as 0 when ranking (see :func:`compare`)

    Returns
    -------
    AttributionResult
    """
    import torch

    clean, corrupt, cl, co, steps = check_patching_pair(clean, corrupt, clean_label, corrupt_label, steps)
    B, T = clean.shape
    sites = list(sites)
    known = set(ONCE_SITES) | set(PER_STEP_SITES)
    for s in sites:
        if s not in known:
            raise ValueError(f"unknown site {s!r}; accepted: {sorted(known)}")
        if s not in model.hook_dict:
            raise ValueError(f"model has no hook {s!r} (variant "
                             f"{getattr(model.cfg, 'variant', '?')!r}); accepted here: "
                             f"{sorted(known & set(model.hook_dict))}")

    keep = lambda n: n in sites
    was_training = model.training
    model.eval()
    saved_grads = {n: (None if p.grad is None else p.grad.clone())
                   for n, p in model.named_parameters()}
    try:
        # One forward of corrupted and clean rows together, caching activations, and one
        # backward of the corrupted rows' metric: the clean rows get zero gradient (unused).
        both = torch.cat([corrupt, clean], 0)
        cache, fwd, bwd = model.get_caching_hooks(keep, incl_bwd=True)
        with torch.enable_grad(), model.hooks(fwd_hooks=fwd, bwd_hooks=bwd):
            logits = model(both)
            ar = torch.arange(B)
            last = logits[:B, -1]
            ld = last[ar, torch.as_tensor(cl)] - last[ar, torch.as_tensor(co)]
            # Sum over pairs, not mean: each pair's gradient is then that pair's own dLD/da.
            ld.sum().backward()
        for _, rec in fwd + bwd:
            getattr(rec, "finish", lambda: None)()
    finally:
        for n, p in model.named_parameters():   # leave the user's .grad as it was
            p.grad = saved_grads[n]
        model.train(was_training)
    clean_ld = _answer_ld(logits[B:], cl, co)
    corrupt_ld = _answer_ld(logits[:B], cl, co)
    idx = torch.as_tensor(steps - 1)
    est = np.zeros((len(sites), steps.size, B))
    for i, site in enumerate(sites):
        if site + "_grad" not in cache:
            raise ValueError(f"no gradient reached {site!r}: the answer does not depend on it")
        act = cache[site]
        diff = (act[B:] - act[:B]).double()                      # clean - corrupted
        contrib = diff * cache[site + "_grad"][:B].double()      # [B, T, ...]
        per_step = contrib.flatten(2).sum(-1)                     # [B, T]
        est[i] = per_step[:, idx].T.cpu().numpy()
    denom = clean_ld.mean() - corrupt_ld.mean()
    estimate = est.mean(-1) / (denom if abs(denom) > 1e-12 else np.nan)
    res = AttributionResult(sites, steps, est, estimate, clean_ld, corrupt_ld)
    if reference is not None:
        compare(res, reference, noise_floor)
    return res


def compare(res: AttributionResult, reference: PatchingResult,
            noise_floor: float = 1e-4) -> AttributionResult:
    """Fill ``res``'s comparison fields from an activation-patching sweep of the same cells.

    ``noise_floor``: recovered fractions with ``|value| <= noise_floor`` count as 0 ("no
    effect") in both maps before ranking. Why: a patch that writes in a state equal to the one
    already there (every step before the changed token) recovers 0 up to float32 round-off of
    the batched forward (~1e-7), while the estimate there is exactly 0 (the activations do not
    differ); ranking that round-off would make most cells random. The largest value the floor
    removed is reported (``largest_floored``), and so is the unfloored ``spearman_raw``.
    """
    if list(reference.sites) != list(res.sites) or not np.array_equal(reference.steps, res.steps):
        raise ValueError(f"reference covers sites {list(reference.sites)} x {reference.steps.size} "
                         f"steps; accepted: the same sites {res.sites} and steps as the estimate")
    if not noise_floor >= 0:
        raise ValueError(f"noise_floor={noise_floor!r}; accepted: a number >= 0")
    floor = lambda a: np.where(np.abs(a) <= noise_floor, 0.0, a)
    est, rec = floor(res.estimate), floor(reference.recovery)
    removed = np.concatenate([np.abs(a)[np.abs(a) <= noise_floor].ravel()
                              for a in (res.estimate, reference.recovery)])
    res.patching = reference
    res.noise_floor = float(noise_floor)
    res.largest_floored = float(removed.max()) if removed.size else 0.0
    res.spearman = spearman(est, rec)
    res.spearman_raw = spearman(res.estimate, reference.recovery)
    res.spearman_by_site = {s: spearman(est[i], rec[i]) for i, s in enumerate(res.sites)}
    res.max_abs_error = float(np.nanmax(np.abs(res.estimate - reference.recovery)))
    return res


def attribute_task(model, task, n_pairs: int = 32, length: int = 50, position: int | None = None,
                   sites=DEFAULT_SITES, seed: int = 0, compare_with_patching: bool = True,
                   noise_floor: float = 1e-4, **sweep_kw) -> AttributionResult:
    """``make_patching_pairs`` + ``attribution_patching``, beside ``patching_sweep`` of the same
    pairs when ``compare_with_patching`` (its keyword arguments in ``sweep_kw``)."""
    clean, corrupt, cl, co = make_patching_pairs(task, n_pairs, length, position, seed)
    ref = None
    if compare_with_patching:
        ref = patching_sweep(model, clean, corrupt, cl, co, sites=sites, seed=seed, **sweep_kw)
    return attribution_patching(model, clean, corrupt, cl, co, sites=sites, reference=ref,
                                noise_floor=noise_floor)
