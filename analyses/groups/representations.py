"""Group representation recovery: which representation do the learned transition matrices form?

A bilinear RNN trained on a group word problem computes `h_t = A(x_t) h_{t-1}`. If it solves the
task for every length, the matrices it applies must form a representation of the group on the
states it reaches, but only up to the symmetries that leave its predictions unchanged
(the argument, in our words):

(a) a positive scale per token: with per-step normalization and a bias-free readout, `c A_v`
    predicts exactly as `A_v` does; we divide each token's matrix by `|det|^(1/r)`;
(b) a change of basis: everything reported here (characters, multiplicities, errors relative to
    the matrices' own size, faithfulness) is basis-independent;
(c) the reachable subspace: directions the states never visit can hold anything, so the matrices
    are restricted to the span of the orbit `{rho(g) h0}` first;
(d) a scale per irreducible block: the change of basis found here is fixed only up to the
    commutant (an invertible map per isotypic component), which the comparison module respects.

Pipeline (`recover_from_matrices`, pure numpy; `recover_representation(model, task)` feeds it):

1. breadth-first search over the Cayley graph from the identity along the token generators: one
   word per element, and every (element, token) edge as a check;
2. the orbit states `A_word h0` (normalized per step), their span by SVD with a relative
   tolerance -> orthonormal basis `Q [H, r]`, restricted matrices `B_v = Qᵀ A_v Q`;
3. `B_v / |det B_v|^(1/r)`; the matrix of every element as the product along its word; then the
   *unitary gauge* `W = (1/|G| Σ_g rho(g)ᵀ rho(g))^(1/2)`, in which a representation is
   orthogonal, so that the errors below do not depend on how badly conditioned the learned basis
   happens to be;
4. homomorphism error: the spread between different words for the same element (edges) and
   `rho(ab)` against `rho(a) rho(b)` over all pairs, relative (Frobenius, in the gauge);
5. characters, irrep multiplicities `<chi, chi_i>` with the distance to integers as residual;
6. a change of basis into irreducible blocks from the isotypic projections (Serre's operators
   `P_k0 = d/|G| Σ_g conj(pi(g)[k,0]) rho(g)`), and its residual;
7. faithfulness: the kernel `{g : rho(g) ≈ I}`.

Why `|det|^(1/r)` for the scale: for a representation every `rho(g)` has finite order, so
`|det rho(g)| = 1` exactly, and the determinant is basis-independent; thus `|det(c rho)|^(1/r) =
c` with no assumption on the basis. It is the geometric mean of the eigenvalue moduli, so noise
moves it by the average of the per-eigenvalue perturbations; the spectral radius also equals `c`
for a representation but is a maximum (one bad eigenvalue sets it) and is not smooth where
eigenvalues collide. A singular restricted matrix (no representation) falls back to the spectral
radius and is flagged.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from analyses._result import Result
from analyses._core import model_transitions

__all__ = [
    "IrrepBlock",
    "RepresentationResult",
    "cayley_bfs",
    "orbit_subspace",
    "normalize_scales",
    "element_matrices",
    "homomorphism_errors",
    "irrep_characters",
    "character_multiplicities",
    "frobenius_schur_indicators",
    "conjugate_irrep_index",
    "conjugacy_classes_from_table",
    "block_diagonalize",
    "representation_kernel",
    "unitary_gauge",
    "realify",
    "subspace_action_to_hidden",
    "recover_from_matrices",
    "recover_representation",
    "task_group_data",
    "summarize",
]


# ----------------------------------------------------------------------------------------------
# Small pure functions over arrays
# ----------------------------------------------------------------------------------------------


def _check_table(table) -> np.ndarray:
    table = np.asarray(table)
    if table.ndim != 2 or table.shape[0] != table.shape[1] or table.shape[0] == 0:
        raise ValueError(f"table must be a square [order, order] array of element ids, got shape {table.shape}")
    if not np.issubdtype(table.dtype, np.integer):
        raise ValueError(f"table must hold integer element ids, got dtype {table.dtype}")
    order = table.shape[0]
    if table.min() < 0 or table.max() >= order:
        raise ValueError(f"table entries must lie in 0..{order - 1}, got {table.min()}..{table.max()}")
    if not np.array_equal(table[0], np.arange(order)) or not np.array_equal(table[:, 0], np.arange(order)):
        raise ValueError("element 0 must be the identity (table[0, g] = table[g, 0] = g)")
    return table.astype(np.int64)


def _inverse_from_table(table: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(table == 0)
    inverse = np.empty(table.shape[0], dtype=np.int64)
    inverse[rows] = cols
    return inverse


def cayley_bfs(table, token_elements) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Breadth-first search over the Cayley graph from the identity.

    The word convention is the project's: reading token `v` in state `g` gives `table[e_v, g]`
    (left multiplication, `h_t = A(x_t) h_{t-1}`).

    Parameters
    ----------
    table : int array [order, order]
        `table[a, b]` = id of `a·b`; element 0 is the identity.
    token_elements : int array [V]
        Element id of each token.

    Returns
    -------
    parent : int array [order]
        Element reached one token earlier on the BFS word (-1 for the identity).
    parent_token : int array [order]
        Token read last on the BFS word (-1 for the identity).
    bfs_order : list[int]
        Elements in the order they were reached (identity first), so parents precede children.

    Raises
    ------
    ValueError
        If the tokens do not generate the whole group.
    """
    table = _check_table(table)
    token_elements = np.asarray(token_elements, dtype=np.int64)
    order = table.shape[0]
    if token_elements.ndim != 1 or token_elements.size == 0:
        raise ValueError(f"token_elements must be a non-empty 1-d array, got shape {token_elements.shape}")
    if token_elements.min() < 0 or token_elements.max() >= order:
        raise ValueError(f"token_elements must be element ids in 0..{order - 1}, got {token_elements.tolist()}")
    parent = np.full(order, -1, dtype=np.int64)
    parent_token = np.full(order, -1, dtype=np.int64)
    seen = np.zeros(order, dtype=bool)
    seen[0] = True
    bfs_order = [0]
    queue = deque([0])
    while queue:
        g = queue.popleft()
        for v, e in enumerate(token_elements):
            nxt = int(table[e, g])
            if not seen[nxt]:
                seen[nxt] = True
                parent[nxt], parent_token[nxt] = g, v
                bfs_order.append(nxt)
                queue.append(nxt)
    if not seen.all():
        raise ValueError(
            f"the tokens (elements {sorted(set(token_elements.tolist()))}) generate only "
            f"{int(seen.sum())} of {order} elements; a representation of the whole group cannot be read off"
        )
    return parent, parent_token, bfs_order


def _word(g: int, parent: np.ndarray, parent_token: np.ndarray) -> tuple[int, ...]:
    word = []
    while g != 0:
        word.append(int(parent_token[g]))
        g = int(parent[g])
    return tuple(reversed(word))


def orbit_subspace(token_matrices, h0, parent, parent_token, bfs_order, rtol: float = 1e-3):
    """Orthonormal basis of the span of the orbit states `A_word(g) h0`, one per element.

    States are normalized after every step, which changes nothing about spans but keeps long
    words of non-isometric matrices finite.

    Parameters
    ----------
    token_matrices : float array [V, H, H]
    h0 : float array [H]
    parent, parent_token, bfs_order : from `cayley_bfs`.
    rtol : float
        Singular values of the [order, H] matrix of unit orbit states below `rtol * largest`
        count as zero (numerical leakage, not a reached direction).

    Returns
    -------
    Q : float array [H, r]
        Orthonormal basis of the reachable subspace.
    singular_values : float array [min(order, H)]
        Of the unit orbit states, divided by the largest (so the first is 1).
    states : float array [order, H]
        The unit orbit states.
    """
    A = np.asarray(token_matrices, dtype=np.float64)
    h0 = np.asarray(h0, dtype=np.float64)
    norm0 = np.linalg.norm(h0)
    if not np.isfinite(norm0) or norm0 == 0:
        raise ValueError(f"h0 must be a finite non-zero vector, got norm {norm0}")
    if not rtol > 0:
        raise ValueError(f"rtol must be positive, got {rtol}")
    states = np.zeros((len(parent), A.shape[1]))
    states[0] = h0 / norm0
    for g in bfs_order[1:]:
        s = A[parent_token[g]] @ states[parent[g]]
        n = np.linalg.norm(s)
        states[g] = s / n if n > 0 else s  # a zero state spans nothing; the errors will show it
    U, s, Vt = np.linalg.svd(states, full_matrices=False)
    rel = s / s[0] if s[0] > 0 else s
    r = int(np.sum(rel > rtol))
    return Vt[:r].T, rel, states


def normalize_scales(matrices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Divide each matrix by its positive scale `|det|^(1/r)` (module docstring says why).

    Parameters
    ----------
    matrices : float array [V, r, r]

    Returns
    -------
    normalized : float array [V, r, r]
    scales : float array [V]
        The positive scale removed from each matrix.
    singular : bool array [V]
        Matrices whose determinant vanished (to 1e-12 of their norm); their scale is the spectral
        radius instead, or 1 if that vanishes too. A representation never has one.
    """
    M = np.asarray(matrices, dtype=np.float64)
    r = M.shape[-1]
    if r == 0:
        return M.copy(), np.ones(M.shape[0]), np.zeros(M.shape[0], dtype=bool)
    sign, logdet = np.linalg.slogdet(M)
    scales = np.exp(logdet / r)
    norms = np.linalg.norm(M, axis=(1, 2)) / np.sqrt(r)
    singular = (sign == 0) | ~(scales > 1e-12 * np.maximum(norms, 1e-300))
    for v in np.nonzero(singular)[0]:
        radius = np.max(np.abs(np.linalg.eigvals(M[v])))
        scales[v] = radius if radius > 1e-300 else 1.0
    return M / scales[:, None, None], scales, singular


def element_matrices(token_matrices, parent, parent_token, bfs_order) -> np.ndarray:
    """The matrix of every element: the product of the token matrices along its BFS word.

    Parameters
    ----------
    token_matrices : array [V, r, r]
    parent, parent_token, bfs_order : from `cayley_bfs`.

    Returns
    -------
    rho : array [order, r, r], `rho[0] = I`.
    """
    B = np.asarray(token_matrices)
    r = B.shape[-1]
    rho = np.zeros((len(parent), r, r), dtype=B.dtype)
    rho[0] = np.eye(r)
    for g in bfs_order[1:]:
        rho[g] = B[parent_token[g]] @ rho[parent[g]]
    return rho


def _rel_err(diff: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Frobenius ||diff|| / ||ref|| over the last two axes (ref floored to avoid 0/0)."""
    num = np.linalg.norm(diff, axis=(-2, -1))
    den = np.linalg.norm(ref, axis=(-2, -1))
    return num / np.maximum(den, 1e-300)


def homomorphism_errors(rho, token_matrices, table, token_elements, chunk: int = 16) -> tuple[float, float, np.ndarray]:
    """How far `rho` is from a homomorphism, relative to the matrices' size.

    Parameters
    ----------
    rho : array [order, r, r]
        Element matrices (from words).
    token_matrices : array [V, r, r]
        Normalized token matrices.
    table : int array [order, order]
    token_elements : int array [V]
    chunk : int
        Rows of the pair table processed at once (bounds memory at chunk·order·r² numbers).

    Returns
    -------
    edge_error : float
        max over elements g and tokens v of ||B_v rho(g) - rho(v·g)|| / ||rho(v·g)||: the spread
        between different words that reach the same element (zero on BFS-tree edges).
    product_error : float
        max over all pairs of ||rho(a) rho(b) - rho(ab)|| / ||rho(ab)||.
    edge_errors : array [V, order]
    """
    rho = np.asarray(rho)
    B = np.asarray(token_matrices)
    table = np.asarray(table)
    token_elements = np.asarray(token_elements)
    order = rho.shape[0]
    pred = np.einsum("vij,gjk->vgik", B, rho, optimize=True)
    target = rho[table[token_elements]]  # [V, order, r, r]
    edge_errors = _rel_err(pred - target, target)
    product_error = 0.0
    for start in range(0, order, chunk):
        a = slice(start, min(start + chunk, order))
        prod = np.einsum("aij,bjk->abik", rho[a], rho, optimize=True)
        target = rho[table[a]]
        product_error = max(product_error, float(_rel_err(prod - target, target).max()))
    return float(edge_errors.max()), product_error, edge_errors


def irrep_characters(irreps) -> np.ndarray:
    """Characters of each irrep on each element: complex array [k, order]."""
    return np.stack([np.trace(np.asarray(p), axis1=1, axis2=2) for p in irreps]).astype(np.complex128)


def character_multiplicities(characters, irreps):
    """Irrep multiplicities from a character: `<chi, chi_i> = 1/|G| Σ_g chi(g) conj(chi_i(g))`.

    Parameters
    ----------
    characters : array [order]
        `tr rho(g)`.
    irreps : list of arrays [order, d_i, d_i] (unitary).

    Returns
    -------
    raw : complex array [k]
        Inner products before rounding.
    multiplicities : int array [k]
        Rounded real parts (may be negative for a non-representation).
    residual : float
        max |raw - multiplicities|: 0 for a representation; the distance to the nearest
        integer vector otherwise.
    """
    chi = np.asarray(characters, dtype=np.complex128)
    table_chars = irrep_characters(irreps)
    if table_chars.shape[1] != chi.shape[0]:
        raise ValueError(f"characters has {chi.shape[0]} entries but the irreps are over {table_chars.shape[1]} elements")
    raw = (table_chars.conj() @ chi) / chi.shape[0]
    mult = np.rint(raw.real).astype(np.int64)
    residual = float(np.max(np.abs(raw - mult))) if raw.size else 0.0
    return raw, mult, residual


def frobenius_schur_indicators(irreps, table) -> np.ndarray:
    """Frobenius–Schur indicator `1/|G| Σ_g chi(g²)` of each irrep: int array [k] in {1, 0, -1}.

    +1: realisable over the reals; 0: complex (the conjugate is a different irrep);
    -1: quaternionic (real only in twice the dimension).
    """
    table = np.asarray(table)
    squares = table[np.arange(table.shape[0]), np.arange(table.shape[0])]
    chars = irrep_characters(irreps)
    return np.rint((chars[:, squares].sum(axis=1) / table.shape[0]).real).astype(np.int64)


def conjugate_irrep_index(irreps, atol: float = 1e-6) -> np.ndarray:
    """For each irrep, the index of the irrep with the conjugate character: int array [k]."""
    chars = irrep_characters(irreps)
    out = np.empty(len(chars), dtype=np.int64)
    for i, c in enumerate(chars):
        dist = np.abs(chars - c.conj()).max(axis=1)
        j = int(np.argmin(dist))
        if dist[j] > atol * max(1.0, np.abs(c).max()):
            raise ValueError(f"irrep {i}: no irrep has the conjugate character (distance {dist[j]:.2e}); the irreps are incomplete")
        out[i] = j
    return out


def conjugacy_classes_from_table(table) -> list[list[int]]:
    """Conjugacy classes (identity's first), each a sorted list of element ids."""
    table = np.asarray(table)
    inverse = _inverse_from_table(table)
    order = table.shape[0]
    seen = np.zeros(order, dtype=bool)
    classes = []
    for g in range(order):
        if seen[g]:
            continue
        cls = sorted(set(int(x) for x in table[table[np.arange(order), g], inverse]))
        seen[cls] = True
        classes.append(cls)
    return classes


def realify(rep) -> np.ndarray:
    """Real form of a complex representation: `Z = X + iY` acts on R^{2d} as [[X, -Y], [Y, X]].

    Parameters
    ----------
    rep : complex array [order, d, d]

    Returns
    -------
    real array [order, 2d, 2d]: a real orthogonal representation if `rep` is unitary; as a
    complex representation it is `rep ⊕ conj(rep)`.
    """
    rep = np.asarray(rep)
    X, Y = rep.real, rep.imag
    return np.block([[X, -Y], [Y, X]])


@dataclass(frozen=True)
class IrrepBlock:
    """One irreducible block of the block-diagonal form: columns `start:stop` of the basis."""

    irrep: int          # index into the irrep list
    name: str
    copy: int           # which copy of this irrep (0-based)
    start: int
    stop: int
    real_form: bool     # True: the block is realify(irrep) (2d real dims for a complex irrep)

    @property
    def dim(self) -> int:
        return self.stop - self.start


def _copies(rho, pi, m: int) -> list[np.ndarray]:
    """`m` copies of the irrep `pi` inside `rho`, each a basis [r, d] with `rho X = X pi`.

    Serre's operators: `P_k0 = d/|G| Σ_g conj(pi(g)[k, 0]) rho(g)`; `P_00` projects onto the
    first basis vector of every copy (rank m), `P_k0` carries it to the k-th. With noise `P_00`
    is only nearly a projector, so its range is taken as its top `m` left singular vectors:
    the rank comes from the (rounded) multiplicity, not from a threshold.
    """
    order, d, _ = pi.shape
    coeff = pi[:, :, 0].conj() * (d / order)  # [order, d]: coefficient of rho(g) in P_k0
    P = np.einsum("gk,gij->kij", coeff, rho, optimize=True)  # [d, r, r]
    U, _, _ = np.linalg.svd(P[0])
    copies = []
    for j in range(m):
        X = P @ U[:, j]  # [d, r]
        X = X.T
        X = X / np.linalg.norm(X[:, 0])
        copies.append(X)
    return copies


def block_diagonalize(rho, irreps, multiplicities, irrep_names=None, fs=None, conjugates=None, real: bool = True):
    """Change of basis `T` with `T⁻¹ rho(g) T` block-diagonal, one irreducible block per copy.

    Parameters
    ----------
    rho : array [order, r, r]
        A representation (or close to one), in any basis.
    irreps : list of unitary arrays [order, d_i, d_i]
    multiplicities : int array [k]
        From `character_multiplicities`. Must satisfy Σ m_i d_i = r.
    irrep_names : list[str] or None
    fs, conjugates : int arrays [k] or None
        Frobenius–Schur indicators and conjugate indices (computed by the caller once).
    real : bool
        If True and `rho` is real and no quaternionic irrep (FS = -1) occurs, return a *real*
        basis: a complex irrep and its conjugate are taken together as one real block
        `realify(pi)` (columns [Re X, -Im X] of a copy X of pi). Otherwise blocks are the
        complex irreps themselves.

    Returns
    -------
    T : array [r, r] (real or complex)
        Columns grouped by irrep (in irrep order), copy, then basis index.
    blocks : list[IrrepBlock]
    ideal : array [order, r, r]
        The block-diagonal target: each block holds `pi(g)` (or `realify(pi)(g)`).

    Raises
    ------
    ValueError
        If the multiplicities do not add up to the dimension (then no such basis exists).
    """
    rho = np.asarray(rho)
    order, r, _ = rho.shape
    mult = np.asarray(multiplicities, dtype=np.int64)
    dims = np.array([p.shape[1] for p in irreps])
    if np.any(mult < 0) or int(mult @ dims) != r:
        raise ValueError(f"multiplicities {mult.tolist()} with irrep dimensions {dims.tolist()} give dimension "
                         f"{int(mult @ dims)}, not {r} (or are negative): no block-diagonal basis exists")
    names = list(irrep_names) if irrep_names is not None else [f"irrep{i}" for i in range(len(irreps))]
    use_real = bool(real) and np.isrealobj(rho)
    if use_real:
        if fs is None or conjugates is None:
            raise ValueError("real=True needs the Frobenius–Schur indicators and conjugate indices")
        if any(fs[i] == -1 for i in range(len(irreps)) if mult[i] > 0):
            use_real = False  # a quaternionic irrep has no real block of its own size; stay complex
        elif any(mult[i] != mult[conjugates[i]] for i in range(len(irreps)) if mult[i] > 0):
            use_real = False  # not a real character after all (non-representation); stay complex
    columns, blocks, ideal_blocks = [], [], []
    start = 0
    for i, pi in enumerate(irreps):
        if mult[i] == 0:
            continue
        pi = np.asarray(pi)
        complex_irrep = use_real and fs[i] == 0
        if complex_irrep and conjugates[i] < i:
            continue  # taken with its conjugate partner, as one real block
        for j, X in enumerate(_copies(rho, pi, int(mult[i]))):
            if use_real and not complex_irrep:
                X = X.real
                target, real_form = pi.real, True
            elif complex_irrep:
                X = np.concatenate([X.real, -X.imag], axis=1)
                target, real_form = realify(pi), True
            else:
                target, real_form = pi, False
            columns.append(X)
            ideal_blocks.append(target)
            blocks.append(IrrepBlock(i, names[i], j, start, start + X.shape[1], real_form))
            start += X.shape[1]
    T = np.concatenate(columns, axis=1)
    dtype = np.float64 if use_real else np.complex128
    ideal = np.zeros((order, r, r), dtype=dtype)
    for b, target in zip(blocks, ideal_blocks, strict=True):
        ideal[:, b.start:b.stop, b.start:b.stop] = target
    return T.astype(dtype), blocks, ideal


def unitary_gauge(rho) -> tuple[np.ndarray, np.ndarray]:
    """Basis in which a representation is orthogonal: `W = S^(1/2)`, `S = 1/|G| Σ_g rho(g)ᴴ rho(g)`.

    `S` is the averaged (invariant) inner product, so `W rho(g) W⁻¹` is orthogonal (unitary) for
    every g when `rho` is a representation. Measuring errors in this basis makes them independent
    of the arbitrary learned basis: the same representation in a badly conditioned basis would
    otherwise show errors inflated by the condition number. For a non-representation the gauge
    is still well defined (if the matrices are invertible) and the errors stay large.

    Parameters
    ----------
    rho : array [order, r, r]

    Returns
    -------
    W, W_inv : arrays [r, r] (identity if `S` is singular).
    """
    rho = np.asarray(rho)
    r = rho.shape[-1]
    S = np.einsum("gji,gjk->ik", rho.conj(), rho) / rho.shape[0]
    w, V = np.linalg.eigh(S)
    if r == 0 or not np.all(np.isfinite(w)) or w[0] <= 1e-12 * max(w[-1], 1e-300):
        return np.eye(r), np.eye(r)
    W = (V * np.sqrt(w)) @ V.conj().T
    Winv = (V / np.sqrt(w)) @ V.conj().T
    if np.isrealobj(rho):
        W, Winv = W.real, Winv.real
    return W, Winv


def representation_kernel(rho, atol: float = 1e-3) -> tuple[list[int], float]:
    """Elements acting as the identity, to tolerance.

    Parameters
    ----------
    rho : array [order, r, r]
    atol : float
        g is in the kernel if ||rho(g) - I||_F / sqrt(r) <= atol.

    Returns
    -------
    kernel : list[int]
        Element ids (always contains 0 for a representation).
    margin : float
        min over g != identity of ||rho(g) - I||_F / sqrt(r): how far the closest non-identity
        element is from acting trivially (faithful iff margin > atol).
    """
    rho = np.asarray(rho)
    r = rho.shape[-1]
    if r == 0:
        return list(range(rho.shape[0])), 0.0
    dist = np.linalg.norm(rho - np.eye(r), axis=(1, 2)) / np.sqrt(r)
    kernel = [int(g) for g in np.nonzero(dist <= atol)[0]]
    margin = float(dist[1:].min()) if len(dist) > 1 else float("inf")
    return kernel, margin


# ----------------------------------------------------------------------------------------------
# The result and the full recovery
# ----------------------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return str(x)
    return f"{x:.1e}" if (x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e3)) else f"{x:.3g}"


@dataclass(repr=False)
class RepresentationResult(Result):
    """What the transition matrices of one model form, as a representation of one group.

    Arrays (r = dimension of the reachable subspace, H = hidden size, V = tokens, k = irreps):

    subspace [H, r] orthonormal (Q); subspace_singular_values [min(order, H)] relative;
    token_scales [V]; token_matrices [V, r, r] (normalized, restricted, in the basis Q);
    gauge [r, r] (W, see `unitary_gauge`); element_matrices [order, r, r] and h0 [r] in the gauge
    coordinates `y = W Qᵀ h`; characters [order] complex; raw_multiplicities [k] complex;
    multiplicities [k] int; change_of_basis [r, r] or None; block_form [order, r, r] or None
    (`T⁻¹ rho(g) T`); block_residuals [n_blocks].
    """

    group_name: str
    order: int
    hidden_size: int
    token_elements: np.ndarray
    table: np.ndarray
    subspace: np.ndarray
    subspace_singular_values: np.ndarray
    subspace_rtol: float
    invariance_error: float
    complement_radius: float           # max_v spectral radius of A_v / c_v off the subspace
    token_scales: np.ndarray
    singular_tokens: list[int]
    token_matrices: np.ndarray         # [V, r, r] normalized, in the orthonormal subspace basis Q
    gauge: np.ndarray                  # [r, r] W: gauge coordinates y = W Qᵀ h
    element_matrices: np.ndarray       # [order, r, r] in gauge coordinates (near-orthogonal)
    words: list[tuple[int, ...]]
    h0: np.ndarray                     # [r] start state in gauge coordinates
    edge_error: float
    product_error: float
    characters: np.ndarray
    irrep_names: list[str]
    irrep_dims: np.ndarray
    irrep_characters: np.ndarray       # [k, order]
    frobenius_schur: np.ndarray        # [k]
    classes: list[list[int]]
    raw_multiplicities: np.ndarray
    multiplicities: np.ndarray
    multiplicity_residual: float
    change_of_basis: np.ndarray | None
    blocks: list[IrrepBlock]
    block_form: np.ndarray | None
    block_residual: float
    block_residuals: np.ndarray
    basis_condition: float
    kernel: list[int]
    faithfulness_margin: float
    atol: float
    notes: list[str] = field(default_factory=list)
    persistent: dict | None = None     # `analyses.subspaces.PersistentSubspace.summary()` when used

    @property
    def dimension(self) -> int:
        return self.subspace.shape[1]

    @property
    def homomorphism_error(self) -> float:
        return max(self.edge_error, self.product_error, self.invariance_error)

    @property
    def residual(self) -> float:
        """Decomposition residual: the larger of the multiplicity and block-diagonal residuals."""
        return max(self.multiplicity_residual, self.block_residual)

    @property
    def is_representation(self) -> bool:
        return (self.homomorphism_error <= self.atol and self.residual <= self.atol
                and not self.singular_tokens and self.change_of_basis is not None)

    @property
    def faithful(self) -> bool:
        """Trivial kernel: only the identity acts as the identity.

        Exactness is a separate fact (`is_representation`): an approximate representation (see
        `is_approximate`) can be faithful. Matrices that are not even approximately a
        homomorphism have no kernel to speak of and are not called faithful.
        """
        return self.kernel == [0] and (self.is_representation or self.is_approximate())

    def decomposition_string(self) -> str:
        """E.g. '2×standard ⊕ trivial' (largest irreps first)."""
        parts = []
        idx = sorted(np.nonzero(self.multiplicities > 0)[0], key=lambda i: (-self.irrep_dims[i], i))
        for i in idx:
            m = int(self.multiplicities[i])
            parts.append(f"{m}×{self.irrep_names[i]}" if m > 1 else self.irrep_names[i])
        return " ⊕ ".join(parts) if parts else "nothing"

    def is_approximate(self, approx_atol: float = 0.1) -> bool:
        """Not exact at ``atol`` but within ``approx_atol``: an approximate representation.

        Trained models that generalise perfectly are often here: their states keep a small
        non-decaying component off the dominant subspace (~2 % in the zoo), so the restricted
        matrices miss being a homomorphism by ~1e-2 while the character multiplicities are still
        within ``approx_atol`` of integers.
        """
        return (not self.is_representation and self.homomorphism_error <= approx_atol
                and self.residual <= approx_atol)

    def sentence(self, approx_atol: float = 0.1) -> str:
        """One human sentence: what was learned, with the numbers that back it."""
        if self.persistent is not None:
            p = self.persistent
            where = (f"on a {self.dimension}-dim persistent subspace of H={self.hidden_size} (invariance residual "
                     f"{_fmt(p['invariance_residual'] if p['invariance_residual'] is not None else float('nan'))}, "
                     f"{p['transient_dimension']} transient dims)")
        else:
            where = f"on a {self.dimension}-dim reachable subspace of H={self.hidden_size}"
        nums = (f"homomorphism error {_fmt(self.homomorphism_error)}, residual {_fmt(self.residual)} "
                f"(atol {_fmt(self.atol)})")
        if self.is_representation:
            faith = ("faithful" if self.faithful else
                     f"not faithful: kernel of {len(self.kernel)} elements")
            warn = (f"; but the unreached directions expand (radius {self.complement_radius:.3g} > 1), so "
                    "rounding there grows with length" if self.complement_radius > 1 + self.atol else "")
            return f"learned {self.decomposition_string()} of {self.group_name} {where}, {faith}; {nums}{warn}"
        if self.is_approximate(approx_atol):
            return (f"approximately {self.decomposition_string()} of {self.group_name} {where} "
                    f"(not exact at atol {_fmt(self.atol)}, within {_fmt(approx_atol)}): "
                    f"homomorphism error {_fmt(self.homomorphism_error)}, residual {_fmt(self.residual)}")
        raw = ", ".join(f"{self.irrep_names[i]} {self.raw_multiplicities[i].real:.2f}"
                        for i in range(len(self.irrep_names)) if abs(self.raw_multiplicities[i]) > 0.05)
        extra = f"; singular token matrices {self.singular_tokens}" if self.singular_tokens else ""
        return (f"not a representation of {self.group_name} {where}: {nums}; "
                f"character multiplicities {raw or 'all ~0'}{extra}")

    def plot(self, ax=None):
        from analyses.plot.representations import plot_characters

        return plot_characters(self, ax=ax)

    def irreps_list(self) -> list[dict]:
        """[{"dim", "multiplicity", "name"}] for the irreps that occur."""
        return [{"dim": int(self.irrep_dims[i]), "multiplicity": int(self.multiplicities[i]),
                 "name": self.irrep_names[i]} for i in range(len(self.irrep_names)) if self.multiplicities[i] != 0]

    def summary(self) -> dict:
        """JSON-safe summary (the "representation" key of `analyze --json` plus detail)."""
        def num(x):
            x = float(x)
            return x if np.isfinite(x) else None

        sv = self.subspace_singular_values
        r = self.dimension
        return {
            "group": self.group_name,
            "homomorphism_error": num(self.homomorphism_error),
            "residual": num(self.residual),
            "faithful": bool(self.faithful),
            "irreps": self.irreps_list(),
            "is_representation": bool(self.is_representation),
            "approximate": bool(self.is_approximate()),
            "decomposition": self.decomposition_string(),
            "dimension": int(r),
            "hidden_size": int(self.hidden_size),
            "edge_error": num(self.edge_error),
            "product_error": num(self.product_error),
            "invariance_error": num(self.invariance_error),
            "complement_radius": num(self.complement_radius),
            "multiplicity_residual": num(self.multiplicity_residual),
            "block_residual": num(self.block_residual),
            "basis_condition": num(self.basis_condition),
            "kernel_size": len(self.kernel),
            "faithfulness_margin": num(self.faithfulness_margin),
            "subspace_last_kept": num(sv[r - 1]) if r >= 1 else None,
            "subspace_first_dropped": num(sv[r]) if r < len(sv) else None,
            "token_scale_range": [num(self.token_scales.min()), num(self.token_scales.max())],
            "atol": self.atol,
            "persistent": self.persistent,
            "sentence": self.sentence(),
        }


def _complement_radius(A: np.ndarray, Q: np.ndarray, scales: np.ndarray) -> float:
    """Largest spectral radius of the normalized token matrices on the unreached directions.

    Those directions hold no state in exact arithmetic, but rounding and any leakage put a little
    there; if a token's matrix expands them (radius > 1 after removing the token's scale) that
    little grows geometrically with length. A model can be an exact representation on its
    reachable subspace and still fail at length 500 for this reason: the number says so.
    """
    H, r = Q.shape
    if r == H:
        return 0.0
    U, _, _ = np.linalg.svd(Q, full_matrices=True)
    Qp = U[:, r:]
    C = np.swapaxes(Qp, 0, 1)[None] @ A @ Qp[None] / scales[:, None, None]
    return float(np.max(np.abs(np.linalg.eigvals(C))))


def recover_from_matrices(
    token_matrices,
    h0,
    table,
    token_elements,
    irreps,
    irrep_names=None,
    group_name: str = "G",
    atol: float = 1e-3,
    subspace_rtol: float = 1e-3,
    subspace=None,
    subspace_singular_values=None,
) -> RepresentationResult:
    """Recover the representation formed by per-token matrices acting on a start state.

    Parameters
    ----------
    token_matrices : float array [V, H, H]
        `A_v`, the transition of token v (`h_t = A_v h_{t-1}`), any positive scale.
    h0 : float array [H]
        Start state.
    table : int array [order, order]
        Group multiplication table, element 0 the identity.
    token_elements : int array [V]
        Element read by each token.
    irreps : list of unitary arrays [order, d_i, d_i]
        A complete list of irreducible representations.
    irrep_names : list[str] or None
    group_name : str
    atol : float
        Tolerance of every yes/no decision (is a representation, faithfulness): relative errors
        and residuals at or below it pass.
    subspace_rtol : float
        Relative singular-value cut of the reachable subspace (see `orbit_subspace`).
    subspace : float array [H, r] with orthonormal columns, or None
        Restrict to this subspace instead of the short-word orbit span (e.g. the persistent
        subspace of `analyses.subspaces`); its invariance residual enters the homomorphism error.
    subspace_singular_values : float array or None
        Evidence for `subspace` (reported as the subspace singular values).

    Returns
    -------
    RepresentationResult
    """
    A = np.asarray(token_matrices, dtype=np.float64)
    if A.ndim != 3 or A.shape[1] != A.shape[2]:
        raise ValueError(f"token_matrices must be [V, H, H], got shape {A.shape}")
    token_elements = np.asarray(token_elements, dtype=np.int64)
    if token_elements.shape != (A.shape[0],):
        raise ValueError(f"token_elements must have one entry per token ({A.shape[0]}), got shape {token_elements.shape}")
    h0 = np.asarray(h0, dtype=np.float64)
    if h0.shape != (A.shape[1],):
        raise ValueError(f"h0 must have shape [{A.shape[1]}], got {h0.shape}")
    if not np.all(np.isfinite(A)):
        raise ValueError("token_matrices contain NaN or inf")
    if not atol > 0:
        raise ValueError(f"atol must be positive, got {atol}")
    table = _check_table(table)
    irreps = [np.asarray(p) for p in irreps]
    if not irreps or any(p.ndim != 3 or p.shape[0] != table.shape[0] or p.shape[1] != p.shape[2] for p in irreps):
        raise ValueError(f"irreps must be a non-empty list of [order={table.shape[0]}, d, d] arrays")
    names = list(irrep_names) if irrep_names is not None else [f"irrep{i}" for i in range(len(irreps))]
    if len(names) != len(irreps):
        raise ValueError(f"{len(names)} irrep names for {len(irreps)} irreps")
    notes: list[str] = []

    parent, parent_token, bfs_order = cayley_bfs(table, token_elements)
    if subspace is None:
        Q, sv, _ = orbit_subspace(A, h0, parent, parent_token, bfs_order, rtol=subspace_rtol)
    else:
        Q = np.asarray(subspace, dtype=np.float64)
        if Q.ndim != 2 or Q.shape[0] != A.shape[1] or Q.shape[1] > A.shape[1]:
            raise ValueError(f"subspace must be [H={A.shape[1]}, r <= H], got shape {Q.shape}")
        if not np.allclose(Q.T @ Q, np.eye(Q.shape[1]), atol=1e-8):
            raise ValueError("subspace must have orthonormal columns")
        sv = (np.asarray(subspace_singular_values, dtype=np.float64) if subspace_singular_values is not None
              else np.ones(Q.shape[1]))
    r = Q.shape[1]
    AQ = A @ Q                                   # [V, H, r]
    B = np.swapaxes(Q, 0, 1)[None] @ AQ           # [V, r, r]
    # How far the span is from invariant: the part of A_v Q that leaves it.
    invariance = float(_rel_err(AQ - Q[None] @ B, AQ).max()) if r else 0.0
    B, scales, singular = normalize_scales(B)
    complement_radius = _complement_radius(A, Q, scales)
    singular_tokens = [int(v) for v in np.nonzero(singular)[0]]
    rho = element_matrices(B, parent, parent_token, bfs_order)
    if not np.all(np.isfinite(rho)):
        notes.append("element matrices overflowed: the normalized token matrices are far from finite order")
        rho = np.nan_to_num(rho, nan=0.0, posinf=1e300, neginf=-1e300)
    W, Winv = unitary_gauge(rho)
    rho = W @ rho @ Winv
    Bg = W @ B @ Winv
    edge, product, _ = homomorphism_errors(rho, Bg, table, token_elements)

    chars = np.trace(rho, axis1=1, axis2=2).astype(np.complex128)
    raw, mult, mult_res = character_multiplicities(chars, irreps)
    dims = np.array([p.shape[1] for p in irreps])
    fs = frobenius_schur_indicators(irreps, table)
    conj = conjugate_irrep_index(irreps)

    T, blocks, block_form, block_res, block_residuals, cond = None, [], None, float("inf"), np.zeros(0), float("inf")
    if np.all(mult >= 0) and int(mult @ dims) == r and r > 0:
        T, blocks, ideal = block_diagonalize(rho, irreps, mult, names, fs, conj)
        cond = float(np.linalg.cond(T))
        if np.isfinite(cond) and cond < 1e12:
            block_form = np.linalg.solve(T[None], rho.astype(T.dtype) @ T[None])
            diff = block_form - ideal
            block_res = float(_rel_err(diff, ideal).max())
            block_residuals = np.array([
                float(np.max(np.linalg.norm(diff[:, :, b.start:b.stop], axis=(1, 2))
                             / np.sqrt(b.dim)))
                for b in blocks])
        else:
            notes.append(f"the isotypic basis is singular (condition {cond:.1e}): copies are not independent")
            T = None
    elif r > 0:
        notes.append(f"multiplicities {mult.tolist()} give dimension {int(mult @ dims)} != {r} (or are negative)")

    kernel, margin = representation_kernel(rho, atol)
    words = [_word(g, parent, parent_token) for g in range(table.shape[0])]
    return RepresentationResult(
        group_name=group_name, order=table.shape[0], hidden_size=A.shape[1], token_elements=token_elements,
        table=table, subspace=Q, subspace_singular_values=sv, subspace_rtol=subspace_rtol,
        invariance_error=invariance, complement_radius=complement_radius, token_scales=scales, singular_tokens=singular_tokens,
        token_matrices=B, gauge=W, element_matrices=rho, words=words,
        h0=W @ (Q.T @ (h0 / np.linalg.norm(h0))),  # with a persistent subspace: h0's projection
        edge_error=edge, product_error=product,
        characters=chars, irrep_names=names, irrep_dims=dims, irrep_characters=irrep_characters(irreps),
        frobenius_schur=fs, classes=conjugacy_classes_from_table(table), raw_multiplicities=raw,
        multiplicities=mult, multiplicity_residual=mult_res, change_of_basis=T, blocks=blocks,
        block_form=block_form, block_residual=block_res, block_residuals=block_residuals,
        basis_condition=cond, kernel=kernel, faithfulness_margin=margin, atol=atol, notes=notes,
    )


# ----------------------------------------------------------------------------------------------
# Models and tasks
# ----------------------------------------------------------------------------------------------


def subspace_action_to_hidden(result: "RepresentationResult", inner, token_matrices) -> np.ndarray:
    """Full H×H token matrices that act as ``inner`` on the subspace and as the model elsewhere.

    `Ã_v = c_v Q W⁻¹ inner_v W Qᵀ + A_v (I - Q Qᵀ)`: ``inner`` [V, r, r] is in the result's gauge
    coordinates `y = W Qᵀ h`, scaled back by the learned token scale `c_v`; on the directions the
    subspace leaves out, the model's own matrices `A_v` [V, H, H] are kept. Used by the causal
    tests (a transported construction in `analyses.groups.comparison`, the snapped representation in
    `analyses.groups.snapping`).
    """
    A = np.asarray(token_matrices, dtype=np.float64)
    Q = result.subspace
    proj = np.eye(A.shape[1]) - Q @ Q.T
    to_hidden = Q @ np.linalg.inv(result.gauge)
    from_hidden = result.gauge @ Q.T
    return result.token_scales[:, None, None] * (to_hidden[None] @ inner @ from_hidden[None]) + A @ proj[None]


def task_group_data(task):
    """(group, token_elements) of a task whose transitions form a group.

    Group and cyclic tasks carry them; any other task whose automaton permutes its states with
    every token (parity) is read as the group those permutations generate. Anything else raises.
    """
    from workbench.constructions import task_group

    return task_group(task)


def recover_representation(model, task, atol: float = 1e-3, subspace_rtol: float = 1e-3,
                           subspace: str = "persistent", persistent_kw: dict | None = None) -> RepresentationResult:
    """Recover the representation a bilinear model's transitions form on a group task.

    Parameters
    ----------
    model : bilinear model with `transition_matrices() -> [V, H, H]` and `h0 [H]`.
    task : a group task (`group:NAME`, `group:NAME/gens`, `cyclic:m`, or any task whose tokens
        permute the automaton states, e.g. `parity`).
    atol, subspace_rtol : see `recover_from_matrices`.
    subspace : "persistent" (default) or "reachable"
        "persistent": restrict to the span of late states (`analyses.subspaces`), where the group
        acts after transients from the initialisation have decayed; the element matrices are then
        products of the restricted token matrices. "reachable": the span of the short-word orbit
        of h0 (exact for constructions, includes transients on trained models).
    persistent_kw : dict or None
        Passed to `analyses.subspaces.persistent_subspace_from_matrices`.
    """
    if subspace not in ("persistent", "reachable"):
        raise ValueError(f"subspace must be 'persistent' or 'reachable', got {subspace!r}")
    group, token_elements = task_group_data(task)
    A, h0 = model_transitions(model, linear=True)
    if A.shape[0] != len(token_elements):
        raise ValueError(f"model has {A.shape[0]} token matrices but task {task.spec!r} has {len(token_elements)} tokens")
    Q = sv = pers = None
    if subspace == "persistent":
        from analyses.subspaces import persistent_subspace_from_matrices

        pers = persistent_subspace_from_matrices(A, h0, **(persistent_kw or {}))
        Q, sv = pers.basis, pers.singular_values
    res = recover_from_matrices(A, h0, group.table, token_elements, group.irreps(), group.irrep_names(),
                                group_name=group.name, atol=atol, subspace_rtol=subspace_rtol,
                                subspace=Q, subspace_singular_values=sv)
    if pers is not None:
        res.persistent = pers.summary()
    return res


def summarize(model, task, atol: float = 1e-3) -> dict:
    """the "representation" key of `analyze --json` for one model and group task."""
    return recover_representation(model, task, atol=atol).summary()
