"""Extract the automaton a trained model implements from its hidden states, and compare it to the task's.

Recipe (works for every model with the hook vocabulary, baselines included):

1. Run the model on sampled sequences (lengths inside and beyond training: by default 256
   sequences of length 50 -- every prefix 1..50 -- and 16 of length 500) and cache the start state
   ``blocks.0.hook_h0`` [B, H] and every step's state ``blocks.0.hook_state`` [B, T, H].
2. L2-normalize the states (predictions of a bias-free readout are invariant to a positive scale)
   and cluster them. Default (``method="predictions"``, ``cluster_by_groups``): one seed cluster
   per predicted class, split only along gaps of half the model's own state spacing, clouds that
   overlap merged -- robust to the ~2% wobble and the drift of trained models, where 50 states on
   a circle give no clear gap in merge heights. ``method="linkage"`` (the original geometric cut): Leader clustering at a fine radius gives micro-clusters; single linkage then
   merges micro-clusters closer than ``tol``. With ``tol="auto"`` the cut is placed in the largest
   *ratio gap* of the merge heights (counting the fine radius as the lowest height), so a
   generalising model -- tight clouds far apart -- gives exactly one cluster per reachable state,
   and the size of that gap (``gap_ratio``) says how clear the separation is.
3. Transition table by majority vote over the observed (cluster, token) -> next-cluster moves;
   the vote purity, the cells with conflicting votes and the cells never observed measure how
   *unstable* the extracted machine is (a drifting model smears states across clusters).
4. Output of each cluster = majority of the model's own argmax predictions at its states.
5. Minimise (``Automaton.minimize``) and test isomorphism with the task's minimal automaton.
   Independently of the isomorphism test, each cluster is aligned with the true minimal state
   most of its points are in, and every transition or output that disagrees with the task is
   listed as a ``Mismatch``.

Gotcha: the readout is never trained on ``h_0`` (labels start after the first token). When the
start cluster is never revisited, its output is unobservable; it is then copied from the task's
start state (``start_output_observed=False``), since no prediction can depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analyses._result import Result

STATE_HOOK = "blocks.0.hook_state"
H0_HOOK = "blocks.0.hook_h0"


# ----------------------------------------------------------------------------- clustering


def normalize_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; zero rows stay zero. Shape preserved ([..., H])."""
    X = np.asarray(X, dtype=np.float64)
    n = np.linalg.norm(X, axis=-1, keepdims=True)
    return X / np.where(n > 0, n, 1.0)


def leader_clusters(X: np.ndarray, radius: float, max_clusters: int = 1000):
    """Greedy leader clustering: each new leader takes every unassigned point within ``radius``.

    Parameters
    ----------
    X : array, (N, H)
    radius : float
    max_clusters : int
        Beyond this many leaders the remaining points go to their nearest leader (a model whose
        states never settle would otherwise cost O(N^2)); ``capped`` reports it.

    Returns
    -------
    labels : int array, (N,)
    centers : array, (K, H)   mean of each cluster's points
    capped : bool
    """
    X = np.asarray(X, dtype=np.float64)
    N = X.shape[0]
    labels = np.full(N, -1, dtype=np.int64)
    leaders = []
    sq = (X * X).sum(1)
    # |x - l|^2 = |x|^2 + |l|^2 - 2 x.l: one GEMV per leader on a lazily compacted copy
    # (copying the unassigned rows at every leader costs O(K N H) memory traffic)
    idx = np.arange(N)
    Xc, sqc = X, sq
    alive = np.ones(N, dtype=bool)
    r2 = radius * radius
    while alive.any() and len(leaders) < max_clusters:
        first = int(np.argmax(alive))
        lead = Xc[first]
        d2 = sqc + sqc[first] - 2.0 * (Xc @ lead)
        take = alive & (d2 <= r2)
        labels[idx[take]] = len(leaders)
        leaders.append(lead)
        alive &= ~take
        if alive.sum() < 0.5 * alive.size:
            idx, Xc, sqc = idx[alive], Xc[alive], sqc[alive]
            alive = np.ones(idx.size, dtype=bool)
    unassigned = idx[alive]
    capped = bool(unassigned.size)
    L = np.stack(leaders)
    if capped:
        # nearest leader by the dot-product form, in chunks (never an [N, K, H] temporary)
        Lsq = (L * L).sum(1)
        for i in range(0, unassigned.size, 4096):
            u = unassigned[i:i + 4096]
            labels[u] = (Lsq[None, :] - 2.0 * (X[u] @ L.T)).argmin(1)
    K = len(leaders)
    counts = np.bincount(labels, minlength=K).astype(np.float64)
    centers = np.zeros((K, X.shape[1]))
    np.add.at(centers, labels, X)
    centers /= counts[:, None]
    return labels, centers, capped


@dataclass
class Clustering:
    labels: np.ndarray      # (N,) cluster id per point, renumbered by first appearance
    n_clusters: int
    tol: float              # merge threshold used
    gap_ratio: float        # merge-height ratio at the cut (large = clear separation); inf for 1 micro
    n_micro: int
    capped: bool


def cluster_states(X: np.ndarray, tol: float | str = "auto", fine_radius: float = 0.02,
                   min_gap_ratio: float = 2.0, fallback_tol: float = 0.2,
                   max_micro: int = 1000) -> Clustering:
    """Cluster normalized states (module docstring, step 2).

    Parameters
    ----------
    X : array, (N, H), rows already normalized
    tol : float or "auto"
        Single-linkage merge distance, or "auto" (largest ratio gap; ``fallback_tol`` when no gap
        exceeds ``min_gap_ratio``).
    fine_radius : float
        Leader radius of the micro-clusters (well below the separation of distinct states).
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    if not (tol == "auto" or (isinstance(tol, (int, float)) and tol > 0)):
        raise ValueError(f"tol must be a positive number or 'auto'; got {tol!r}")
    micro, centers, capped = leader_clusters(X, fine_radius, max_micro)
    K = centers.shape[0]
    if K == 1:
        return Clustering(np.zeros(len(X), dtype=np.int64), 1, float(fine_radius), np.inf, 1, capped)
    Z = linkage(centers, method="single")
    heights = np.sort(Z[:, 2])
    if tol == "auto":
        h = np.concatenate([[fine_radius], np.maximum(heights, fine_radius)])
        ratios = h[1:] / h[:-1]
        i = int(np.argmax(ratios))
        gap = float(ratios[i])
        cut = float(np.sqrt(h[i] * h[i + 1])) if gap >= min_gap_ratio else float(fallback_tol)
    else:
        cut = float(tol)
        above = heights[heights > cut]
        below = heights[heights <= cut]
        gap = float(above.min() / max(below.max() if below.size else fine_radius, fine_radius)) \
            if above.size else np.inf
    merged = fcluster(Z, t=cut, criterion="distance") - 1
    labels = merged[micro]
    # renumber by first appearance so the start state (point 0) is cluster 0
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first)
    remap = np.empty(order.size, dtype=np.int64)
    remap[labels[first[order]]] = np.arange(order.size)
    labels = remap[labels]
    return Clustering(labels, int(order.size), cut, gap, K, capped)


def _nearest(X: np.ndarray, C: np.ndarray, chunk: int = 8192):
    """Index of and distance to the nearest row of C for every row of X. (N, H), (K, H) -> (N,), (N,)."""
    Csq = (C * C).sum(1)
    idx = np.empty(len(X), dtype=np.int64)
    d2 = np.empty(len(X))
    for i in range(0, len(X), chunk):
        x = X[i:i + chunk]
        D = Csq[None, :] - 2.0 * (x @ C.T)
        idx[i:i + chunk] = D.argmin(1)
        d2[i:i + chunk] = D[np.arange(len(x)), idx[i:i + chunk]] + (x * x).sum(1)
    return idx, np.sqrt(np.maximum(d2, 0.0))


def _spread(X: np.ndarray, labels: np.ndarray, K: int):
    """Centroids (K, H), rms radius (K,) and max radius (K,) of the clusters ``labels`` (N,)."""
    cnt = np.bincount(labels, minlength=K).astype(np.float64)
    C = np.zeros((K, X.shape[1]))
    np.add.at(C, labels, X)
    C /= np.maximum(cnt, 1)[:, None]
    r = np.linalg.norm(X - C[labels], axis=1)
    rms = np.sqrt(np.bincount(labels, weights=r * r, minlength=K) / np.maximum(cnt, 1))
    rmax = np.zeros(K)
    np.maximum.at(rmax, labels, r)
    return C, rms, rmax


def _subsample(n: int, m: int) -> np.ndarray:
    """Deterministic, evenly spread subset of range(n) of size min(n, m) (rows are time-ordered)."""
    return np.arange(n) if n <= m else np.linspace(0, n - 1, m).round().astype(np.int64)


def cluster_by_groups(X: np.ndarray, groups: np.ndarray, split_frac: float = 0.5,
                      overlap: float = 1.0, max_sample: int = 400, min_frac: float = 0.0,
                      fine_radius: float = 0.02, max_clusters: int = 1000) -> Clustering:
    """Cluster normalized states seeded by a label per point (the model's own predicted class).

    Used by ``extract_from_arrays`` (module docstring, step 2). A trained model's states wobble
    around ideal points and drift over long runs, so a cloud can be wider than the spacing between
    its points and a gap in single-linkage heights is no reliable cut (50 near-uniformly spaced
    states on a circle give none). The readout, however, already separates the states it must
    tell apart, and its prediction is a function of the state, so points with different
    predictions are different states of the model's Moore machine:

    1. Seed one cluster per predicted class (``groups >= 0``).
    2. Split a class only along a gap of at least ``split_frac`` times the model's own scale --
       the median distance from a class centroid to the nearest other class centroid -- found by
       single linkage on the class's leaders at radius tol / 2 (at most ``max_sample``; they cover
       every point, rare states included); fragments holding fewer than ``min_frac`` of the
       class's points (outliers; none by default, since an exact model's rare states are real)
       are dropped, and every point of the class goes to its nearest surviving centroid (a
       k-means assignment step).
    3. Merge clusters whose clouds overlap: centroid distance < ``overlap`` x (rms radius_i +
       rms radius_j). A model that cannot keep two states apart (drift, collapse) gets them merged,
       and the table built on the merged cluster then has conflicting votes (unstable).
    4. Points without a label (``groups < 0``: the start states ``h_0``) join the nearest cluster
       when they lie within 1.5 x its largest radius, else are clustered among themselves by
       ``cluster_states``.

    Parameters
    ----------
    X : array, (N, H), rows normalized
    groups : int array, (N,)   predicted class per point, -1 where there is none

    max_clusters : int
        More clusters than this means the states never settle: ``capped`` is set (unstable).

    Returns
    -------
    Clustering with ``gap_ratio`` = the smallest centroid distance / (rms_i + rms_j) over pairs of
    final clusters (how many spreads apart the closest two states are; inf for one cluster).
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    X = np.asarray(X, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.int64)
    if groups.shape != (X.shape[0],):
        raise ValueError(f"groups must have shape ({X.shape[0]},); got {groups.shape}")
    if not (0 < split_frac and overlap >= 0 and max_sample >= 2 and 0 <= min_frac < 1):
        raise ValueError(f"need split_frac > 0, overlap >= 0, max_sample >= 2, 0 <= min_frac < 1; got "
                         f"{split_frac}, {overlap}, {max_sample}, {min_frac}")
    known = groups >= 0
    capped = False
    labels = np.full(X.shape[0], -1, dtype=np.int64)
    if known.any():
        gid, ginv = np.unique(groups[known], return_inverse=True)
        Xk = X[known]
        G = gid.size
        Cg, _, _ = _spread(Xk, ginv, G)
        if G > 1:
            D = _pdist(Cg)
            np.fill_diagonal(D, np.inf)
            scale = float(np.median(D.min(1)))
        else:
            scale = np.inf  # no second class to measure a scale by: never split
        tol = max(split_frac * scale, fine_radius)
        sub = np.empty(Xk.shape[0], dtype=np.int64)
        order = np.argsort(ginv, kind="stable")
        bounds = np.searchsorted(ginv[order], np.arange(G + 1))
        K = 0
        for g in range(G):
            rows = order[bounds[g]:bounds[g + 1]]
            Xg = Xk[rows]
            cents = None
            if np.isfinite(tol) and rows.size >= 2:
                # leaders at radius tol/2 cover every point (rare states included), and single
                # linkage of the leaders at tol then splits only along gaps of about tol or more
                micro, S, _ = leader_clusters(Xg, 0.5 * tol, max_sample)
                if S.shape[0] >= 2:
                    lab = fcluster(linkage(S, method="single"), t=tol, criterion="distance") - 1
                    frag = lab[micro]
                    sizes = np.bincount(frag)
                    big = np.flatnonzero(sizes >= min_frac * rows.size)
                    if big.size >= 2:
                        cents = np.stack([Xg[frag == b].mean(0) for b in big])
            if cents is None:
                sub[rows] = K
                K += 1
            else:
                sub[rows] = K + _nearest(Xg, cents)[0]
                K += cents.shape[0]
        # 3. merge overlapping clouds (connected components of the overlap graph); beyond
        # max_clusters the states never settle (capped) and the K x K step is skipped
        if K > max_clusters:
            capped = True
            labels[known] = sub
        else:
            C, rms, _ = _spread(Xk, sub, K)
            D = _pdist(C)
            i, j = np.nonzero(np.triu(D < overlap * (rms[:, None] + rms[None, :]), 1))
            _, comp = connected_components(coo_matrix((np.ones(i.size), (i, j)), shape=(K, K)),
                                           directed=False)
            labels[known] = comp[sub]
    n_known = int(labels.max()) + 1
    rest = np.flatnonzero(~known)
    if rest.size:
        if n_known:
            C, _, rmax = _spread(X[known], labels[known], n_known)
            near, dist = _nearest(X[rest], C)
            join = dist <= 1.5 * rmax[near]
            labels[rest[join]] = near[join]
            rest = rest[~join]
        if rest.size:
            extra = cluster_states(X[rest], fine_radius=fine_radius).labels
            labels[rest] = n_known + extra
    K = int(labels.max()) + 1
    if 1 < K <= max_clusters:
        C, rms, _ = _spread(X, labels, K)
        D = _pdist(C) / np.maximum(rms[:, None] + rms[None, :], 1e-300)
        np.fill_diagonal(D, np.inf)
        gap = float(D.min())
    else:
        gap = np.inf
    tol_used = float(tol) if known.any() and np.isfinite(tol) else float(fine_radius)
    if K > max_clusters:
        gap = 0.0
    return Clustering(_first_appearance(labels), K, tol_used, gap, K, capped)


def _pdist(C: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows via the Gram matrix (no (K, K, H) temporary). -> (K, K)."""
    sq = (C * C).sum(1)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (C @ C.T), 0.0))


def _first_appearance(labels: np.ndarray) -> np.ndarray:
    """Renumber cluster ids by first appearance so that the start state (point 0) is cluster 0."""
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first)
    remap = np.empty(int(labels.max()) + 1, dtype=np.int64)
    remap[labels[first[order]]] = np.arange(order.size)
    return remap[labels]


# ----------------------------------------------------------------------------- folding

#: Above this many clusters extraction does not fold (see extract_from_arrays).
FOLD_MAX_CLUSTERS = 300


def fold_partial_clusters(transitions: np.ndarray, observed: np.ndarray, outputs: np.ndarray,
                          centers: np.ndarray, counts: np.ndarray, unknown_output: int):
    """Fold partially observed clusters into compatible ones (minimisation with don't-cares).

    A trained model visits some states only in a transient -- e.g. the first step after a
    large-norm ``h_0``, before the state has settled onto its attractor -- and there they sit
    far enough from the settled cloud to form a separate cluster. Such a cluster is seen a few
    times, so most of its row is unobserved and the table sends those cells to a sink: the
    machine gains spurious states although no observation tells the fragment apart from the
    settled state. Unobserved cells are *don't-cares*, not evidence, so the principled repair is
    the state merge of automata learning (RPNI-style folding): merge a partially observed cluster
    ``p`` into a cluster ``q`` when no observation distinguishes them -- equal outputs
    (``unknown_output`` matches anything), and the merge forced on every pair of observed
    successors ``(delta(p, v), delta(q, v))`` recursively consistent too.

    Guards, so that nothing is folded on absence of evidence alone: ``p`` must have an
    unobserved cell and share an observed cell with ``q`` (a cluster with no observed cell at all
    may join the nearest cluster with its output), and ``q`` must be at least as observed as
    ``p``. States whose observed cells are disjoint (modarith's number vs operator positions)
    are therefore never merged, and fully observed rows are left to ``Automaton.minimize``.
    Conflicting evidence (different outputs along any forced pair) blocks the fold, so a
    model whose fragments really behave differently keeps them.

    Parameters
    ----------
    transitions : int array, (K, V)   majority next cluster, -1 where unobserved
    observed : bool array, (K, V)
    outputs : int array, (K,)
    centers : array, (K, H)           cluster centroids (candidates are tried nearest first)
    counts : int array, (K,)          points per cluster (rarest clusters are folded first)
    unknown_output : int              the output of a cluster whose output was never observed

    Returns
    -------
    fold : int array, (K,)   representative cluster of each cluster (fold[k] == k: kept)
    """
    trans = np.where(observed, transitions, -1).astype(np.int64)
    out = np.asarray(outputs, dtype=np.int64).copy()
    K, V = trans.shape
    parent = np.arange(K)

    def find(par, a):
        while par[a] != a:
            par[a] = par[par[a]]
            a = par[a]
        return a

    def attempt(p, q):
        par, tr, ou = parent.copy(), trans.copy(), out.copy()
        stack = [(p, q)]
        while stack:
            a, b = stack.pop()
            a, b = find(par, a), find(par, b)
            if a == b:
                continue
            if ou[a] != ou[b] and unknown_output not in (ou[a], ou[b]):
                return None
            par[a] = b
            if ou[b] == unknown_output:
                ou[b] = ou[a]
            for v in np.flatnonzero(tr[a] >= 0):
                if tr[b, v] < 0:
                    tr[b, v] = tr[a, v]
                else:
                    stack.append((int(tr[a, v]), int(tr[b, v])))
        return par, tr, ou

    D = _pdist(centers)
    changed = True
    while changed:
        changed = False
        reps = np.array([k for k in range(K) if find(parent, k) == k])
        obs = trans[reps] >= 0
        n_obs = obs.sum(1)
        for i in np.argsort(counts[reps] if counts.size else n_obs, kind="stable"):
            p = int(reps[i])
            if find(parent, p) != p or n_obs[i] == V:
                continue
            shared = (obs & obs[i]).any(1) if n_obs[i] else np.ones(reps.size, bool)
            ok = shared & (n_obs >= n_obs[i]) & (reps != p)
            for j in np.flatnonzero(ok)[np.argsort(D[p, reps[ok]], kind="stable")]:
                q = int(reps[j])
                if find(parent, q) != q:
                    continue
                res = attempt(p, q)
                if res is not None:
                    parent, trans, out = res
                    changed = True
                    break
            if changed:
                break  # representatives changed: recompute the candidate lists
    return np.array([find(parent, k) for k in range(K)], dtype=np.int64)


# ----------------------------------------------------------------------------- table building


@dataclass
class Mismatch:
    """One disagreement between the extracted machine and the task (aligned by majority state)."""

    kind: str            # "transition" or "output" or "missing"
    cluster: int         # extracted cluster
    token: int | None    # token (transitions only)
    found: int           # extracted: true state of the next cluster, or the extracted output
    expected: int        # task: true next state, or the true output


@dataclass(repr=False)
class ExtractionResult(Result):
    """Automaton extracted from hidden states (see module docstring).

    ``transitions`` [K(+1), V], ``outputs`` [K(+1)]: the raw table over clusters (+1 sink state when
    some cell was never observed).
    """

    n_clusters: int
    n_states: int                  # states of the minimised extracted automaton
    n_task_states: int             # states of the task's minimal automaton
    isomorphic: bool
    mismatches: list[Mismatch]
    purity: float                  # fraction of transition votes agreeing with the majority
    output_purity: float           # fraction of predictions agreeing with their cluster's output
    state_purity: float            # fraction of points in their cluster's majority true state
    conflicts: int                 # cells with more than one observed next cluster
    missing: int                   # cells never observed (sent to a sink state)
    gap_ratio: float
    tol: float
    stable: bool                   # purity >= 1 - purity_tol and no missing cells and not capped
    start_output_observed: bool
    transitions: np.ndarray
    outputs: np.ndarray
    cluster_state: np.ndarray      # (K,) majority true minimal state per cluster (-1 if unknown)
    start: int = 0                 # the start cluster (where h_0 falls)
    minimal: object = None         # the minimised extracted Automaton
    description: str = ""          # the finding in words (returned by `sentence()`)
    notes: list[str] = field(default_factory=list)
    n_folded: int = 0              # partially observed clusters folded away (``fold_partial_clusters``)

    def summary(self) -> dict:
        """JSON-safe summary (the ``automaton`` key of ``analyze --json``)."""
        sp = float(self.state_purity)
        return {"states": int(self.n_states), "isomorphic": bool(self.isomorphic),
                "mismatches": len(self.mismatches), "clusters": int(self.n_clusters),
                "task_states": int(self.n_task_states), "purity": float(self.purity),
                "output_purity": float(self.output_purity),
                "state_purity": sp if np.isfinite(sp) else None, "conflicts": int(self.conflicts),
                "missing": int(self.missing), "stable": bool(self.stable),
                "gap_ratio": float(self.gap_ratio) if np.isfinite(self.gap_ratio) else None,
                "sentence": self.description}

    def sentence(self) -> str:
        return self.description

    def plot(self, ax=None, task=None, token_names=None):
        from analyses.plot.automata import plot_extracted_automaton

        return plot_extracted_automaton(self, task=task, ax=ax, token_names=token_names)


def _majority(keys: np.ndarray, values: np.ndarray, n_keys: int, n_values: int):
    """Majority value per key, its count and the total count. Keys/values int arrays (N,)."""
    pair = keys.astype(np.int64) * n_values + values
    uniq, cnt = np.unique(pair, return_counts=True)
    k, v = uniq // n_values, uniq % n_values
    best = np.full(n_keys, -1, dtype=np.int64)
    best_cnt = np.zeros(n_keys, dtype=np.int64)
    total = np.bincount(k, weights=cnt, minlength=n_keys).astype(np.int64)
    distinct = np.bincount(k, minlength=n_keys)
    # iterate in count order so the largest count wins (ties: smallest value, deterministic)
    order = np.lexsort((-v, cnt))
    best[k[order]] = v[order]
    best_cnt[k[order]] = cnt[order]
    return best, best_cnt, total, distinct


def build_automaton_table(labels: np.ndarray, tokens: np.ndarray, predictions: np.ndarray,
                          n_clusters: int, n_symbols: int, n_outputs: int, start: int = 0):
    """Majority-vote transition table and output map over clusters.

    Parameters
    ----------
    labels : int array, (B, T+1)   cluster of h_0 (column 0) and of each step's state
    tokens : int array, (B, T)
    predictions : int array, (B, T)   model argmax at steps 1..T
    n_outputs : int                   number of classes; the sink state gets output ``n_outputs``
    start : int                       the start cluster (is its output ever observed?)

    Returns
    -------
    dict with transitions [K', V], outputs [K'], purity, output_purity, conflicts, missing,
    start_output_observed (K' = K, or K + 1 with a sink when a cell was never observed).
    """
    K, V = n_clusters, n_symbols
    src = labels[:, :-1].reshape(-1)
    dst = labels[:, 1:].reshape(-1)
    tok = np.asarray(tokens).reshape(-1)
    nxt, nxt_cnt, total, distinct = _majority(src * V + tok, dst, K * V, K)
    observed = total > 0
    purity = float(nxt_cnt.sum() / max(total.sum(), 1))
    conflicts = int((distinct > 1).sum())
    missing = int((~observed).sum())
    out, out_cnt, out_tot, _ = _majority(labels[:, 1:].reshape(-1), np.asarray(predictions).reshape(-1),
                                         K, max(n_outputs, int(np.max(predictions)) + 1))
    output_purity = float(out_cnt.sum() / max(out_tot.sum(), 1))
    start_observed = bool(out_tot[start] > 0)
    trans = nxt.reshape(K, V)
    outputs = out.copy()
    # a cluster holding only unlabelled points (h_0, window starts) has no observed output: it
    # gets the "unknown" output n_outputs, like the sink (the start cluster is handled by the caller)
    outputs[out_tot == 0] = n_outputs
    if missing:
        trans = np.vstack([trans, np.full((1, V), K)])
        trans[trans < 0] = K
        outputs = np.append(outputs, n_outputs)
    return dict(transitions=trans.astype(np.int64), outputs=outputs.astype(np.int64), purity=purity,
                output_purity=output_purity, conflicts=conflicts, missing=missing,
                start_output_observed=start_observed, observed=observed.reshape(K, V))


def extract_from_arrays(states: np.ndarray, tokens: np.ndarray, predictions: np.ndarray,
                        task_automaton, true_states: np.ndarray | None = None,
                        start_rows: np.ndarray | None = None, n_outputs: int | None = None,
                        tol: float | str = "auto",
                        fine_radius: float = 0.02, purity_tol: float = 1e-3,
                        method: str = "predictions", fold: bool = True) -> ExtractionResult:
    """Extract and compare an automaton from cached arrays (the model-free core).

    Parameters
    ----------
    states : array, (B, T+1, H)
        Hidden states, ``h_0`` at index 0 then one per step (any scale: normalized here).
    tokens : int array, (B, T)
    predictions : int array, (B, T)   the model's argmax class at steps 1..T
    task_automaton : workbench.tasks.Automaton
        The task's automaton (minimised here).
    true_states : int array, (B, T+1), optional
        Minimal-automaton state at column 0 and after each step; computed from
        ``task_automaton`` (rows starting at its start state) when omitted.
    start_rows : bool array, (B,), optional
        Rows whose column 0 is ``h_0`` (default: all). Other rows are windows of longer runs.
    tol, fine_radius : see ``cluster_states`` (``tol`` is used by ``method="linkage"`` only).
    purity_tol : float
        ``stable`` needs transition-vote purity >= 1 - purity_tol.
    method : "predictions" or "linkage"
        "predictions" (default): clusters seeded by the model's predicted class and refined by
        distance (``cluster_by_groups``), robust to the wobble and drift of trained models;
        "linkage": purely geometric leader + single-linkage clustering (``cluster_states``).
    fold : bool
        Fold partially observed clusters (transient states seen a few times) into clusters no
        observation distinguishes them from (``fold_partial_clusters``); ``n_folded`` counts them.
    """
    if method not in ("predictions", "linkage"):
        raise ValueError(f"method must be 'predictions' or 'linkage'; got {method!r}")
    # the same class as the task's (workbench.tasks.Automaton): its minimize/isomorphism are used
    Automaton = type(task_automaton)
    states = np.asarray(states)
    tokens = np.asarray(tokens, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    B, T1, H = states.shape
    if tokens.shape != (B, T1 - 1) or predictions.shape != (B, T1 - 1):
        raise ValueError(f"states {states.shape} need tokens and predictions of shape {(B, T1 - 1)}; "
                         f"got {tokens.shape} and {predictions.shape}")
    if not np.all(np.isfinite(states)):
        bad = int((~np.isfinite(states)).any(-1).sum())
        raise ValueError(f"{bad} cached states contain NaN/inf; the model diverged")
    target = task_automaton.minimize()
    V = int(target.n_symbols)
    if tokens.max() >= V or tokens.min() < 0:
        raise ValueError(f"tokens must lie in 0..{V - 1}; got range {tokens.min()}..{tokens.max()}")
    n_out = int(n_outputs if n_outputs is not None else max(target.n_outputs, predictions.max() + 1))
    if true_states is None:
        true_states = np.concatenate([np.full((B, 1), target.start), target.run(tokens)], 1)
    true_full = np.asarray(true_states, dtype=np.int64)
    if true_full.shape != (B, T1):
        raise ValueError(f"true_states must have shape {(B, T1)}; got {true_full.shape}")
    start_rows = np.ones(B, bool) if start_rows is None else np.asarray(start_rows, bool)
    if start_rows.shape != (B,) or not start_rows.any():
        raise ValueError(f"start_rows must be a bool array of shape ({B},) with a True entry")

    X = normalize_rows(states).reshape(B * T1, H)
    if method == "predictions":
        # column 0 (h_0, or the first state of a window) carries no prediction: label -1
        groups = np.concatenate([np.full((B, 1), -1), predictions], 1).reshape(-1)
        cl = cluster_by_groups(X, groups, fine_radius=fine_radius)
    else:
        cl = cluster_states(X, tol=tol, fine_radius=fine_radius)
    labels = cl.labels.reshape(B, T1)
    K = cl.n_clusters
    start_labels = labels[start_rows, 0]
    start = int(np.bincount(start_labels).argmax())
    tab = build_automaton_table(labels, tokens, predictions, K, V, n_out, start)
    notes = []
    n_folded = 0
    # Folding is for a few rare transient fragments beside a settled machine; with hundreds of
    # clusters the states never settled (the result is unstable anyway) and the pairwise search
    # over clusters is too slow to be worth it.
    if fold and 1 < K <= FOLD_MAX_CLUSTERS:
        outs = tab["outputs"][:K].copy()
        if not tab["start_output_observed"]:
            outs[start] = target.outputs[target.start]  # as below: no prediction depends on it
        C, _, _ = _spread(X, labels.reshape(-1), K)
        rep = fold_partial_clusters(tab["transitions"][:K], tab["observed"], outs, C,
                                    np.bincount(labels.reshape(-1), minlength=K), n_out)
        n_folded = int((rep != np.arange(K)).sum())
        if n_folded:
            labels = _first_appearance(rep[labels.reshape(-1)]).reshape(B, T1)
            K = int(labels.max()) + 1
            start_labels = labels[start_rows, 0]
            start = int(np.bincount(start_labels).argmax())
            tab = build_automaton_table(labels, tokens, predictions, K, V, n_out, start)
            notes.append(f"{n_folded} partially observed clusters (transients) folded into "
                         f"compatible ones; {cl.n_clusters} clusters before folding")
    outputs = tab["outputs"]
    if (start_labels != start).any():
        notes.append("h_0 fell into more than one cluster (the start state differs between sequences)")
    if not tab["start_output_observed"]:
        # no prediction is ever made from h_0 (module docstring, gotcha)
        outputs[start] = target.outputs[target.start]
        notes.append("start cluster never revisited: its output is unobservable, copied from the task")

    extracted = Automaton(transitions=tab["transitions"], start=start, outputs=outputs)
    minimal = extracted.minimize()
    exercised = exercised_automaton(target, true_full, tokens, n_out)
    iso = bool(minimal.is_isomorphic(exercised))

    # align clusters with true states by majority, then list disagreements
    cs, cs_cnt, cs_tot, _ = _majority(labels.reshape(-1), true_full.reshape(-1), K, target.n_states)
    state_purity = float(cs_cnt.sum() / max(cs_tot.sum(), 1))
    mism = []
    obs = tab["observed"]
    true_obs = _observed_cells(true_full, tokens, target.n_states, V)
    for c in range(K):
        q = cs[c]
        if outputs[c] != target.outputs[q] and (tab["start_output_observed"] or c != start):
            mism.append(Mismatch("output", c, None, int(outputs[c]), int(target.outputs[q])))
        for v in range(V):
            expected = int(target.transitions[q, v])
            if not obs[c, v] and not true_obs[q, v]:
                continue  # a cell the task's sequences never exercise (e.g. modarith syntax)
            if not obs[c, v]:
                mism.append(Mismatch("missing", c, v, -1, expected))
                continue
            found = int(cs[tab["transitions"][c, v]])
            if found != expected:
                mism.append(Mismatch("transition", c, v, found, expected))

    n_missing = sum(m.kind == "missing" for m in mism)
    reasons = []
    if tab["purity"] < 1 - purity_tol:
        reasons.append(f"transition votes disagree: purity {tab['purity']:.4f} < 1 - {purity_tol:g}")
    if n_missing:
        reasons.append(f"{n_missing} cells the task exercises were never observed from a cluster")
    if cl.capped:
        reasons.append(f"the states never settle: more than {cl.n_micro} micro-clusters of radius "
                       f"{fine_radius:g}")
    stable = not reasons
    verdict = ("isomorphic to" if iso else "NOT isomorphic to")
    sentence = (f"{K} clusters -> {minimal.n_states} states after minimisation, {verdict} the task's "
                f"minimal automaton ({exercised.n_states} states on the sampled sequences); "
                f"{len(mism)} mismatching transitions/outputs; vote purity {tab['purity']:.4f} with "
                f"{tab['conflicts']} conflicting and {n_missing} unobserved cells: "
                + ("stable." if stable else "UNSTABLE (" + "; ".join(reasons) + ")."))
    return ExtractionResult(
        n_clusters=K, n_states=int(minimal.n_states), n_task_states=int(exercised.n_states),
        isomorphic=iso, mismatches=mism, purity=tab["purity"], output_purity=tab["output_purity"],
        state_purity=state_purity, conflicts=tab["conflicts"], missing=n_missing,
        gap_ratio=cl.gap_ratio, tol=cl.tol, stable=bool(stable),
        start_output_observed=tab["start_output_observed"], transitions=tab["transitions"],
        outputs=outputs, cluster_state=cs, start=start, minimal=minimal, description=sentence, notes=notes,
        n_folded=n_folded)


def _observed_cells(states: np.ndarray, tokens: np.ndarray, n_states: int, V: int) -> np.ndarray:
    """(state, token) cells used by the data: states (B, T+1) before each token (B, T). -> (n, V)."""
    obs = np.zeros((n_states, V), dtype=bool)
    obs[states[:, :-1].reshape(-1), tokens.reshape(-1)] = True
    return obs


def exercised_automaton(target, true_states: np.ndarray, tokens: np.ndarray, n_outputs: int):
    """The task's automaton restricted to the (state, token) cells the sampled sequences use.

    Unused cells go to a sink state with output ``n_outputs``, exactly as unobserved cells of the
    extracted table do, so the two machines are compared on the language the samples exercise
    (uniformly random tokens exercise every cell; modarith's alternating syntax does not).
    Returned minimised. ``true_states`` (B, T+1) includes column 0.
    """
    obs = _observed_cells(true_states, tokens, target.n_states, target.n_symbols)
    if obs[np.unique(true_states)].all():
        return target
    n = target.n_states
    tr = np.where(obs, target.transitions, n)
    tr = np.vstack([tr, np.full((1, target.n_symbols), n)])
    out = np.append(target.outputs, n_outputs)
    return type(target)(transitions=tr, start=target.start, outputs=out).minimize()


# ----------------------------------------------------------------------------- model wiring


def collect_states(model, tokens, chunk: int = 256):
    """Run a model and return ``h_0`` + every step's state and the argmax predictions.

    Parameters
    ----------
    model : any workbench model with ``run_with_cache`` and the hook vocabulary
    tokens : int tensor or array, (B, T)

    Returns
    -------
    states : array, (B, T+1, H)   column 0 = ``blocks.0.hook_h0`` (zeros when the model has none)
    predictions : int array, (B, T)
    """
    import torch

    tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    was_training = model.training
    model.eval()
    outs, preds = [], []
    try:
        with torch.no_grad():
            for i in range(0, tokens.shape[0], chunk):
                tk = tokens[i:i + chunk]
                logits, cache = model.run_with_cache(tk, names_filter=lambda n: n in (STATE_HOOK, H0_HOOK))
                st = cache[STATE_HOOK].double()
                if st.ndim != 3:
                    raise ValueError(f"{STATE_HOOK} cached with shape {tuple(st.shape)}; expected [B, T, H]")
                h0 = cache[H0_HOOK].double() if H0_HOOK in cache else torch.zeros_like(st[:, 0])
                if h0.ndim == 1:
                    h0 = h0.expand(st.shape[0], -1)
                outs.append(torch.cat([h0[:, None], st], 1).numpy())
                preds.append(logits.argmax(-1).numpy())
    finally:
        model.train(was_training)
    return np.concatenate(outs), np.concatenate(preds)


def sample_tokens(task, n_sequences: int = 256, length: int = 50, n_long: int = 16,
                  long_length: int = 500, seed: int = 0) -> list[np.ndarray]:
    """Deterministic evaluation sequences: ``n_sequences`` of ``length`` and ``n_long`` long ones."""
    if n_sequences < 1 or length < 1:
        raise ValueError(f"need n_sequences >= 1 and length >= 1; got {n_sequences}, {length}")
    sets = [task.eval_set(task.valid_length(length), n_sequences, seed=seed).tokens.numpy()]
    if n_long > 0 and long_length > 0:
        sets.append(task.eval_set(task.valid_length(long_length), n_long, seed=seed + 1).tokens.numpy())
    return sets


def extract_automaton(model, task, n_sequences: int = 256, length: int = 50, n_long: int = 16,
                      long_length: int = 500, seed: int = 0, tol: float | str = "auto",
                      fine_radius: float = 0.02, purity_tol: float = 1e-3,
                      method: str = "predictions", fold: bool = True) -> ExtractionResult:
    """Extract the automaton of ``model`` on ``task`` and compare it with the task's (module doc).

    Parameters
    ----------
    n_sequences, length : short sequences (every prefix 1..length is visited)
    n_long, long_length : long sequences beyond the training lengths (drift shows up here)
    tol, fine_radius, purity_tol, method, fold : see ``extract_from_arrays``

    The long sequences are cut into windows of ``length`` steps overlapping by one state, so all
    rows share one rectangular array and every (state, token, next state) triple appears once.
    """
    target = task.automaton.minimize()
    all_states, all_tok, all_pred, all_true, all_start = [], [], [], [], []
    for toks in sample_tokens(task, n_sequences, length, n_long, long_length, seed):
        states, preds = collect_states(model, toks)
        run = np.concatenate([np.full((toks.shape[0], 1), target.start), target.run(toks)], 1)
        T = toks.shape[1]
        L = min(length, T)
        for s in range(0, T - L + 1, L):
            all_states.append(states[:, s:s + L + 1])
            all_tok.append(toks[:, s:s + L])
            all_pred.append(preds[:, s:s + L])
            all_true.append(run[:, s:s + L + 1])
            all_start.append(np.full(toks.shape[0], s == 0))
    L = min(a.shape[1] for a in all_tok)  # the long set may be shorter than `length` if n_long only
    cut = lambda xs, n: np.concatenate([x[:, :n] for x in xs])  # noqa: E731
    return extract_from_arrays(cut(all_states, L + 1), cut(all_tok, L), cut(all_pred, L),
                               task.automaton, true_states=cut(all_true, L + 1),
                               start_rows=np.concatenate(all_start), n_outputs=task.n_classes,
                               tol=tol, fine_radius=fine_radius, purity_tol=purity_tol,
                               method=method, fold=fold)


def summarize(model, task) -> dict:
    """the ``automaton`` key of ``analyze --json``: ``states``, ``isomorphic``, ``mismatches`` (+ purity etc.)."""
    return extract_automaton(model, task).summary()
