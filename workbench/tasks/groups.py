"""Finite permutation groups with character tables and explicit irreducible representations.

Convention (pinned in ``docs/internals.md``; every module relies on it):

* an element is a permutation, stored as the tuple of the images of ``0 … n-1``;
* element id 0 is the identity; ids follow a breadth-first search from the identity over the
  generators, so they are deterministic for a given generator list;
* ``table[a, b]`` is the id of ``a·b`` with ``(a·b)(i) = a[b[i]]`` (apply ``b`` first);
* a representation ``rho`` is an array ``[|G|, d, d]`` with ``rho[table[a, b]] = rho[a] @ rho[b]``;
  the permutation representation is ``rho(p) e_i = e_{p(i)}``;
* word problem: after reading ``g_1 … g_t`` the state is ``s_t = g_t · s_{t-1} = g_t ⋯ g_1``.

Numerics (no library does this well, so it is written here):

* character table: Burnside's eigenvalue method. The class-sum structure constants give
  commuting matrices whose joint eigenvectors are the central characters. A random combination
  of them is rescaled by ``sqrt(|C_j|)`` so it is a *normal* matrix, then split into a Hermitian
  matrix and diagonalised with ``eigh`` (well conditioned, orthonormal eigenvectors); clusters of
  near-equal eigenvalues are re-split with fresh random combinations restricted to the cluster.
* irreps: the isotypic projector ``P_chi`` of the regular representation (its columns are a cheap
  gather of character values) gives the ``d²``-dimensional isotypic subspace; a random Hermitian
  element of the commutant (right translations) has ``d`` distinct eigenvalues there, each of
  multiplicity ``d``, and one eigenspace is one irreducible copy. Its matrices are computed for the
  generators only and extended to every element along the breadth-first tree, then checked on every
  edge of the Cayley graph (which proves the homomorphism property). Irreps with Frobenius–Schur
  indicator +1 are computed entirely in real arithmetic, so they come out real orthogonal.

Size limit: groups of order up to :data:`MAX_ORDER` (2000). The closure stops and raises
``ValueError`` as soon as it exceeds the limit. Memory grows like ``order²`` (the table) and the
regular representation like ``order³`` (only built on request).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Sequence

import numpy as np

__all__ = ["Group", "Decomposition", "MAX_ORDER", "GROUP_NAMES_HELP", "parse_cycles", "cycle_string"]

#: Largest group order accepted (closure, tables and irreps stay within seconds and ~100 MB).
MAX_ORDER = 2000

GROUP_NAMES_HELP = (
    "Sn (symmetric, order n!), An (alternating, order n!/2), Dn (dihedral of order 2n: symmetries "
    "of the n-gon, D4 has order 8), Zn (cyclic, order n), Q8 (quaternion, regular action on 8 "
    "points), direct products joined by 'x' (Z2xZ4, S3xZ2, A4xZ5), or "
    "perm:<generators in cycle notation>, e.g. perm:(0 1 2)(3 4),(0 1) "
    f"(generators separated by commas, points 0-based, degree = largest point + 1); order <= {MAX_ORDER}"
)


@dataclass
class Decomposition:
    """Irrep multiplicities of a representation (``Group.decompose``).

    Attributes
    ----------
    multiplicities : np.ndarray
        ``[k]`` int, rounded multiplicity of each irrep (order of ``Group.irreps()``).
    raw : np.ndarray
        ``[k]`` complex inner products ``<chi_rep, chi_i>`` before rounding.
    residual : float
        ``max |raw - multiplicities|``.
    is_representation : bool
        ``residual <= atol`` and ``homomorphism_error <= atol``.
    homomorphism_error : float
        ``max |rep[g·h] - rep[g] @ rep[h]|`` over the group's generators ``g`` and all ``h``
        (this checks every edge of the Cayley graph, which is equivalent to the homomorphism
        property given ``rep[identity] = I``; that is checked too).
    atol : float
        Tolerance used for the decisions.
    names : list[str]
        Irrep names, as ``Group.irrep_names()``.
    dims : np.ndarray
        ``[k]`` irrep dimensions.
    """

    multiplicities: np.ndarray
    raw: np.ndarray
    residual: float
    is_representation: bool
    homomorphism_error: float = 0.0
    atol: float = 1e-6
    names: list[str] = field(default_factory=list)
    dims: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def summary(self) -> list[dict]:
        """One dict per irrep present: ``{"name", "dim", "multiplicity"}`` (JSON-safe)."""
        return [
            {"name": n, "dim": int(d), "multiplicity": int(m)}
            for n, d, m in zip(self.names, self.dims, self.multiplicities, strict=True)
            if m != 0
        ]


# --------------------------------------------------------------------------------------------
# cycle notation


def _split_top_level(text: str) -> list[str]:
    """Split at commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


_CYCLE_RE = re.compile(r"\(([^()]*)\)")


def parse_cycles(text: str) -> list[tuple[int, ...]]:
    """Parse generators written in cycle notation.

    Syntax: generators separated by commas; each generator is one or more cycles ``(a b c)``
    (points are non-negative integers, separated by spaces or commas); ``()`` is the identity.
    Cycles in one generator may overlap and compose right to left, like the group product
    (``(0 1)(1 2)`` applies ``(1 2)`` first). The degree is the largest point + 1 over all
    generators (at least 1).

    Returns
    -------
    list of tuple[int, ...]
        Each generator as the images of ``0 … degree-1``.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty generator list {text!r}; expected e.g. '(0 1 2)(3 4),(0 1)'")
    gens_cycles = []
    for part in _split_top_level(text):
        part = part.strip()
        if not part:
            raise ValueError(f"empty generator in {text!r}; expected e.g. '(0 1 2)(3 4),(0 1)'")
        if _CYCLE_RE.sub("", part).strip():
            raise ValueError(
                f"cannot parse generator {part!r} in {text!r}: a generator is a product of cycles "
                "like (0 1 2)(3 4), points are non-negative integers"
            )
        cycles = []
        for body in _CYCLE_RE.findall(part):
            tokens = [t for t in re.split(r"[\s,]+", body.strip()) if t]
            if not all(t.isdigit() for t in tokens):
                raise ValueError(f"cycle ({body}) in {text!r} has a point that is not a non-negative integer")
            pts = [int(t) for t in tokens]
            if len(set(pts)) != len(pts):
                raise ValueError(f"cycle ({body}) in {text!r} repeats a point")
            cycles.append(pts)
        gens_cycles.append(cycles)
    degree = 1 + max([p for cyc in gens_cycles for c in cyc for p in c], default=0)
    gens = []
    for cycles in gens_cycles:
        perm = list(range(degree))
        for c in reversed(cycles):  # rightmost cycle acts first
            cyc_map = list(range(degree))
            for i, p in enumerate(c):
                cyc_map[p] = c[(i + 1) % len(c)]
            perm = [cyc_map[perm[i]] for i in range(degree)]
        gens.append(tuple(perm))
    return gens


def cycle_string(perm: Sequence[int]) -> str:
    """Disjoint-cycle notation of a permutation (fixed points omitted; identity is ``()``)."""
    perm = [int(p) for p in perm]
    seen = [False] * len(perm)
    out = []
    for i in range(len(perm)):
        if seen[i] or perm[i] == i:
            seen[i] = True
            continue
        cyc, j = [], i
        while not seen[j]:
            seen[j] = True
            cyc.append(j)
            j = perm[j]
        out.append("(" + " ".join(map(str, cyc)) + ")")
    return "".join(out) or "()"


# --------------------------------------------------------------------------------------------
# named groups


def _named_generators(name: str) -> tuple[list[tuple[int, ...]], int]:
    """Generators and expected order of a single (non-product) named group."""
    if name == "Q8":
        # Quaternion units as (sign, unit) with unit in 1, i, j, k; index = 4*neg + unit.
        mult = {  # unit products u*v = (sign, unit)
            (0, 0): (1, 0), (0, 1): (1, 1), (0, 2): (1, 2), (0, 3): (1, 3),
            (1, 0): (1, 1), (1, 1): (-1, 0), (1, 2): (1, 3), (1, 3): (-1, 2),
            (2, 0): (1, 2), (2, 1): (-1, 3), (2, 2): (-1, 0), (2, 3): (1, 1),
            (3, 0): (1, 3), (3, 1): (1, 2), (3, 2): (-1, 1), (3, 3): (-1, 0),
        }

        def left(u: int) -> tuple[int, ...]:  # left multiplication by +u on the 8 units
            images = []
            for x in range(8):
                neg, v = divmod(x, 4)
                s, w = mult[(u, v)]
                neg2 = neg ^ (s < 0)
                images.append(4 * neg2 + w)
            return tuple(images)

        return [left(1), left(2)], 8
    m = re.fullmatch(r"([SADZ])(\d+)", name)
    if not m:
        raise ValueError(f"unknown group name {name!r}; accepted: {GROUP_NAMES_HELP}")
    fam, n = m.group(1), int(m.group(2))
    if n < 1:
        raise ValueError(f"group {name!r}: n must be >= 1; accepted: {GROUP_NAMES_HELP}")
    ident = tuple(range(n))
    cyc = tuple((i + 1) % n for i in range(n))
    if fam == "Z":
        return [cyc], n
    if fam == "S":
        order = math.factorial(n)
        if n == 1:
            return [ident], 1
        swap = (1, 0) + tuple(range(2, n))
        return ([swap, cyc] if n > 2 else [swap]), order
    if fam == "A":
        order = max(1, math.factorial(n) // 2)
        if n < 3:
            return [ident], 1
        gens = []
        for k in range(2, n):  # 3-cycles (0 1 k) generate A_n
            p = list(range(n))
            p[0], p[1], p[k] = 1, k, 0
            gens.append(tuple(p))
        return gens, order
    # dihedral group of order 2n
    if n == 1:
        return [(1, 0)], 2
    if n == 2:  # Klein four-group, acting on 4 points
        return [(1, 0, 2, 3), (0, 1, 3, 2)], 4
    refl = tuple((-i) % n for i in range(n))
    return [cyc, refl], 2 * n


def _shift(perm: tuple[int, ...], offset: int, degree: int) -> tuple[int, ...]:
    """Embed a permutation of ``len(perm)`` points at ``offset`` in a permutation of ``degree``."""
    out = list(range(degree))
    for i, p in enumerate(perm):
        out[offset + i] = offset + p
    return tuple(out)


def _product_generators(factors: list[str]) -> tuple[list[tuple[int, ...]], int]:
    specs = [_named_generators(f) for f in factors]
    order = 1
    for _, o in specs:
        order *= o
    degree = sum(len(g[0]) for g, _ in specs)
    gens, offset = [], 0
    for g, _ in specs:
        gens += [_shift(p, offset, degree) for p in g]
        offset += len(g[0])
    return gens, order


# --------------------------------------------------------------------------------------------
# numerics helpers


def _snap(values: np.ndarray, atol: float = 1e-9) -> np.ndarray:
    """Round real and imaginary parts that are within ``atol`` of an integer (exact characters)."""
    re_, im_ = values.real.copy(), values.imag.copy()
    for part in (re_, im_):
        r = np.rint(part)
        close = np.abs(part - r) <= atol
        part[close] = r[close]
    return (re_ + 0.0) + 1j * (im_ + 0.0)  # + 0.0 turns -0.0 into 0.0


def _joint_eigenbasis(make_hermitian, k: int, rng: np.random.Generator, rtol: float = 1e-6,
                      max_rounds: int = 12) -> np.ndarray:
    """Orthonormal joint eigenvectors of a commuting family of Hermitian matrices.

    ``make_hermitian(rng)`` returns a random Hermitian element ``[k, k]`` of the family. Vectors
    whose eigenvalues lie within ``rtol * spread`` of each other form a cluster; each cluster is
    re-diagonalised with a fresh random element restricted to it, until all clusters are single.
    """
    U = np.eye(k, dtype=complex)
    clusters = [np.arange(k)]
    for _ in range(max_rounds):
        if all(len(c) == 1 for c in clusters):
            return U
        H = make_hermitian(rng)
        scale = max(1e-300, float(np.abs(H).max()))
        new_clusters = []
        for c in clusters:
            if len(c) == 1:
                new_clusters.append(c)
                continue
            Uc = U[:, c]
            w, V = np.linalg.eigh(Uc.conj().T @ H @ Uc)
            U[:, c] = Uc @ V
            breaks = np.nonzero(np.diff(w) > rtol * scale)[0] + 1
            new_clusters += [c[s] for s in np.split(np.arange(len(c)), breaks)]
        clusters = new_clusters
    raise RuntimeError("could not separate the central characters (degenerate random draws)")


# --------------------------------------------------------------------------------------------


class Group:
    """A finite permutation group with its multiplication table, classes, characters and irreps.

    Build with :meth:`from_permutations` or :meth:`named`. Attributes are plain numpy arrays;
    treat them as read-only. Expensive results (classes, character table, irreps) are computed
    once and cached on the instance; methods return copies.

    Attributes
    ----------
    name : str
    degree : int
        Number of points the permutations act on.
    elements : list[tuple[int, ...]]
        Index = element id; ``elements[0]`` is the identity.
    order : int
    table : np.ndarray
        ``[order, order]`` int64, ``table[a, b] = id(a·b)``, ``(a·b)(i) = a[b[i]]``.
    identity : int
        Always 0.
    inverse : np.ndarray
        ``[order]`` int64.
    element_orders : np.ndarray
        ``[order]`` int64.
    generators : list[int]
        Element ids of the generators (given ones, duplicates removed, order kept).
    perms : np.ndarray
        ``[order, degree]`` int64, the elements as an array.
    """

    # ---- construction -----------------------------------------------------------------------

    @classmethod
    def from_permutations(cls, generators, name: str | None = None, *, max_order: int = MAX_ORDER) -> "Group":
        """Close a list of permutations under composition (breadth-first search).

        Parameters
        ----------
        generators : sequence of sequences of int
            Each generator lists the images of ``0 … n-1``; all must have the same length ``n``.
        name : str, optional
            Defaults to the ``perm:`` cycle notation of the generators.
        max_order : int
            Raise ``ValueError`` as soon as the closure exceeds this many elements.

        Raises
        ------
        ValueError
            A generator that is not a permutation, generators of different lengths, no
            generators, or an order above ``max_order``.
        """
        try:
            gens = [tuple(int(x) for x in np.asarray(g).ravel().tolist()) for g in generators]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"generators {generators!r} are not sequences of integers") from exc
        if not gens:
            raise ValueError("no generators given; pass e.g. [(1, 0, 2), (1, 2, 0)]")
        n = len(gens[0])
        for g in gens:
            if len(g) != n or n == 0:
                raise ValueError(f"generators {generators!r} must all be non-empty and of the same length")
            if sorted(g) != list(range(n)):
                raise ValueError(
                    f"generator {g!r} is not a permutation of 0..{n - 1} "
                    "(a generator lists the images of 0..n-1, each exactly once)"
                )
        if max_order > MAX_ORDER:
            raise ValueError(f"max_order={max_order} exceeds the supported limit {MAX_ORDER}")
        if name is None:
            name = "perm:" + ",".join(cycle_string(g) for g in gens)
        self = cls.__new__(cls)
        self.name = name
        self.degree = n
        self._closure(gens, max_order)
        return self

    @classmethod
    def named(cls, name: str) -> "Group":
        """A named group: ``Sn``, ``An``, ``Dn`` (order 2n), ``Zn``, ``Q8``, products ``AxB…``,
        or ``perm:<cycles>``. Instances are cached, so repeated calls share characters/irreps.

        Raises
        ------
        ValueError
            Unknown name, ``n < 1``, or an order above :data:`MAX_ORDER` (checked before the
            closure is attempted for named families).
        """
        if not isinstance(name, str):
            raise ValueError(f"group name must be a string, got {name!r}; accepted: {GROUP_NAMES_HELP}")
        return _named_cached(name.strip())

    def _closure(self, gens: list[tuple[int, ...]], max_order: int) -> None:
        n = self.degree
        ident = tuple(range(n))
        gens_arr = np.array(gens, dtype=np.int64)
        lookup: dict[bytes, int] = {np.array(ident, dtype=np.int64).tobytes(): 0}
        perms = [np.array(ident, dtype=np.int64)]
        parent, via, depth = [-1], [-1], [0]
        # left[k][e] = id(gen_k · e); filled for every element as the search visits it
        left = []
        frontier = [0]
        d = 0
        while frontier:
            d += 1
            front = np.stack([perms[i] for i in frontier])  # [F, n]
            nxt = []
            for k, g in enumerate(gens_arr):
                prod = g[front]  # (g·f)(i) = g[f[i]]
                for f_id, row in zip(frontier, prod, strict=True):
                    key = row.tobytes()
                    j = lookup.get(key)
                    if j is None:
                        j = len(perms)
                        if j >= max_order:
                            raise ValueError(
                                f"group generated by {[cycle_string(x) for x in gens]} has order > "
                                f"{max_order} (the supported limit is {MAX_ORDER})"
                            )
                        lookup[key] = j
                        perms.append(row.copy())
                        parent.append(f_id)
                        via.append(k)
                        depth.append(d)
                        nxt.append(j)
                    left.append((k, f_id, j))
            frontier = nxt
        N = len(perms)
        L = np.zeros((len(gens), N), dtype=np.int64)
        ks, fs, js = (np.array(x, dtype=np.int64) for x in zip(*left, strict=True))
        L[ks, fs] = js
        # table[e] = L[k][table[parent(e)]] because e = gen_k · parent(e); rows in BFS order
        table = np.empty((N, N), dtype=np.int64)
        table[0] = np.arange(N)
        parent_a, via_a = np.array(parent), np.array(via)
        for e in range(1, N):
            table[e] = L[via_a[e], table[parent_a[e]]]
        self.perms = np.stack(perms)
        self.elements = [tuple(p) for p in self.perms.tolist()]
        self.order = N
        self.table = table
        self.identity = 0
        self.inverse = np.argmax(table == 0, axis=1).astype(np.int64)
        self._lookup = lookup
        self._parent = parent_a
        self._via = via_a
        self._depth = np.array(depth)
        # generators as ids (duplicates dropped, order kept); _gen_perm_ids is per given generator
        gen_ids = [lookup[g.tobytes()] for g in gens_arr]
        self._gen_ids = np.array(gen_ids, dtype=np.int64)
        seen, uniq = set(), []
        for g in gen_ids:
            if g not in seen:
                seen.add(g)
                uniq.append(g)
        self.generators = uniq

    def __repr__(self) -> str:
        return f"Group({self.name!r}, order={self.order}, degree={self.degree})"

    # ---- elementary structure ---------------------------------------------------------------

    @cached_property
    def element_orders(self) -> np.ndarray:
        """``[order]`` int64: the order of each element."""
        N = self.order
        out = np.zeros(N, dtype=np.int64)
        cur = np.arange(N)
        k = 1
        while (out == 0).any():
            newly = (cur == 0) & (out == 0)
            out[newly] = k
            cur = self.table[cur, np.arange(N)]
            k += 1
        return out

    @cached_property
    def element_names(self) -> list[str]:
        """Cycle notation of every element (``"()"`` for the identity)."""
        return [cycle_string(p) for p in self.elements]

    def index(self, perm) -> int:
        """Element id of a permutation (sequence of images). ``ValueError`` if not in the group."""
        arr = np.asarray(perm, dtype=np.int64).ravel()
        j = self._lookup.get(arr.tobytes()) if arr.shape == (self.degree,) else None
        if j is None:
            raise ValueError(f"{tuple(arr.tolist())!r} is not an element of {self.name} (degree {self.degree})")
        return j

    def is_abelian(self) -> bool:
        return bool((self.table == self.table.T).all())

    # ---- conjugacy classes ------------------------------------------------------------------

    @cached_property
    def _classes(self) -> tuple[list[list[int]], np.ndarray]:
        N = self.order
        class_of = np.full(N, -1, dtype=np.int64)
        classes = []
        g = np.arange(N)
        for x in range(N):
            if class_of[x] >= 0:
                continue
            members = np.unique(self.table[self.table[g, x], self.inverse])  # g x g⁻¹
            class_of[members] = len(classes)
            classes.append(members.tolist())
        return classes, class_of

    def conjugacy_classes(self) -> list[list[int]]:
        """Conjugacy classes as sorted lists of element ids; the identity's class first, then by
        smallest element id."""
        return [list(c) for c in self._classes[0]]

    @property
    def class_of(self) -> np.ndarray:
        """``[order]`` int64: index of each element's conjugacy class."""
        return self._classes[1].copy()

    @property
    def class_sizes(self) -> np.ndarray:
        """``[k]`` int64."""
        return np.array([len(c) for c in self._classes[0]], dtype=np.int64)

    # ---- characters -------------------------------------------------------------------------

    def _central_matrix(self, r: np.ndarray) -> np.ndarray:
        """``M[j, l] = Σ_i r_i c_{i j l}`` with class-sum structure constants ``c``.

        ``c_{ijl} = #{x ∈ C_i : x⁻¹ z_l ∈ C_j}`` for a fixed ``z_l ∈ C_l``. Shape ``[k, k]``.
        """
        classes, class_of = self._classes
        k = len(classes)
        reps = np.array([c[0] for c in classes])
        y_cls = class_of[self.table[self.inverse[:, None], reps[None, :]]]  # [N, k]
        idx = (y_cls * k + np.arange(k)[None, :]).ravel()
        w = np.broadcast_to(r[class_of][:, None], y_cls.shape).ravel()
        M = np.bincount(idx, weights=w.real, minlength=k * k) + 1j * np.bincount(idx, weights=w.imag, minlength=k * k)
        return M.reshape(k, k)

    @cached_property
    def _characters(self) -> dict:
        classes, class_of = self._classes
        k, N = len(classes), self.order
        sizes = self.class_sizes.astype(float)
        s = np.sqrt(sizes)

        def make_hermitian(rng):
            r = rng.normal(size=k) + 1j * rng.normal(size=k)
            Nr = self._central_matrix(r) * s[None, :] / s[:, None]  # normal matrix
            alpha = rng.normal()
            return (Nr + Nr.conj().T) / 2 + alpha * (Nr - Nr.conj().T) / 2j

        if k == N:
            # Abelian: exact characters by extending along the generators (an O(N²) construction
            # instead of an O(N³) eigenproblem with 2000 classes).
            chi = self._abelian_characters()
            eig_residual = 0.0
        else:
            rng = np.random.default_rng(12345)  # fixed: results are deterministic
            U = _joint_eigenbasis(make_hermitian, k, rng)
            # Check: the columns are eigenvectors of an independent random element of the family.
            r = rng.normal(size=k) + 1j * rng.normal(size=k)
            Nr = self._central_matrix(r) * s[None, :] / s[:, None]
            NU = Nr @ U
            lam = np.einsum("ij,ij->j", U.conj(), NU)
            eig_residual = float(np.abs(NU - U * lam[None, :]).max() / max(1.0, np.abs(Nr).max()))
            if eig_residual > 1e-7:
                raise RuntimeError(f"character computation failed for {self.name}: eigen residual {eig_residual:.2e}")
            # column u ∝ sqrt|C_j| chi(C_j); phase fixed by chi(1) > 0, norm by Σ |C_j||chi_j|² = N
            u0 = U[0, :]
            U = U * (np.abs(u0) / u0)[None, :]
            chi = (np.sqrt(N) * U / s[:, None]).T  # [k irreps, k classes]
        dims_f = chi[:, 0].real
        dims = np.rint(dims_f).astype(np.int64)
        dim_residual = float(np.abs(chi[:, 0] - dims).max())
        if dim_residual > 1e-6 or int((dims**2).sum()) != N:
            raise RuntimeError(f"character computation failed for {self.name}: dimension residual {dim_residual:.2e}")
        chi = _snap(chi)
        chi[:, 0] = dims
        # Frobenius–Schur indicator: (1/N) Σ_g chi(g²)
        sq_cls = class_of[self.table[np.arange(N), np.arange(N)]]
        fs_raw = (chi[:, sq_cls].sum(axis=1) / N)
        fs = np.rint(fs_raw.real).astype(np.int64)
        # Order: trivial first, then by dimension, then by character values (rounded so the key
        # does not depend on floating-point noise).
        keys = []
        for i in range(k):
            key = (int(dims[i]), tuple(np.round(-chi[i].real, 6)), tuple(np.round(-chi[i].imag, 6)))
            keys.append(key)
        order = sorted(range(k), key=lambda i: keys[i])
        chi, dims, fs = chi[order], dims[order], fs[order]
        return {"table": chi, "dims": dims, "fs": fs, "eig_residual": eig_residual,
                "fs_residual": float(np.abs(fs_raw - np.rint(fs_raw.real)).max())}

    def _abelian_characters(self) -> np.ndarray:
        """Characters of an abelian group, ``[N, N]`` (columns in class order = element order).

        Walk the generators: if ``g`` has relative order ``m`` over the subgroup ``H`` built so far
        (``g^m ∈ H``), each character of ``H`` extends in ``m`` ways, with phase
        ``(phase(g^m) + t) / m``; elements of ``⟨H, g⟩`` are ``g^j h``, ``j < m``. Phases are kept
        as fractions of a turn so values are exact up to one final ``exp``.
        """
        N, table = self.order, self.table
        H = np.array([0])
        phase = np.zeros((1, 1))  # [characters, |H|], fraction of a turn
        pos = np.full(N, -1)
        pos[0] = 0
        for g in self.generators:
            if pos[g] >= 0:
                continue
            powers = [0]
            x = g
            while pos[x] < 0:
                powers.append(x)
                x = table[g, x]
            m = len(powers)
            phi = (phase[:, pos[x]][:, None] + np.arange(m)[None, :]) / m  # [chars, m] phase of g
            phi = phi.reshape(-1)
            base = np.repeat(phase, m, axis=0)  # each old character m times, matching phi
            j = np.arange(m)
            new_phase = (base[:, None, :] + phi[:, None, None] * j[None, :, None]) % 1.0  # [c, m, |H|]
            H = table[np.array(powers)[:, None], H[None, :]].reshape(-1)
            phase = new_phase.reshape(len(phi), -1)
            pos[:] = -1
            pos[H] = np.arange(len(H))
        assert len(H) == N
        chi = np.exp(2j * np.pi * phase[:, pos])  # columns back in element order
        return chi

    def character_table(self) -> np.ndarray:
        """Complex ``[k, k]``: rows = irreps (order of :meth:`irreps`), columns = classes (order of
        :meth:`conjugacy_classes`). Values within 1e-9 of integers are rounded to them."""
        return self._characters["table"].copy()

    def irrep_dims(self) -> np.ndarray:
        """``[k]`` int64."""
        return self._characters["dims"].copy()

    def frobenius_schur(self) -> np.ndarray:
        """``[k]`` int in {1, 0, -1}: real, complex, quaternionic type of each irrep."""
        return self._characters["fs"].copy()

    @cached_property
    def _irrep_names(self) -> list[str]:
        dims = self._characters["dims"]
        symmetric = bool(re.fullmatch(r"S\d+", self.name)) and self.order > 1
        names, counters = [], {}
        for i in range(len(dims)):
            if i == 0:
                names.append("trivial")
                continue
            if symmetric and dims[i] == 1:
                names.append("sign")
                continue
            c = counters.get(int(dims[i]), 0)
            counters[int(dims[i])] = c + 1
            names.append(f"{dims[i]}{_letters(c)}")
        return names

    def irrep_names(self) -> list[str]:
        """Stable, unique names: ``"trivial"``, ``"sign"`` (named S_n only), otherwise dimension +
        letters in table order (``"1a"``, ``"2a"``, ``"3a"``, ``"3b"``, …, ``"1z"``, ``"1aa"``)."""
        return list(self._irrep_names)

    # ---- irreducible representations --------------------------------------------------------

    @cached_property
    def _irreps(self) -> list[np.ndarray]:
        chi, dims, fs = (self._characters[x] for x in ("table", "dims", "fs"))
        class_of = self._classes[1]
        rng = np.random.default_rng(2024)
        out = []
        for i in range(len(dims)):
            rho = self._build_irrep(chi[i][class_of], int(dims[i]), int(fs[i]), rng)
            err = self._cayley_error(rho)
            if err > 1e-8:
                raise RuntimeError(f"irrep {i} of {self.name} is not a homomorphism (error {err:.2e})")
            out.append(rho)
        return out

    def irreps(self) -> list[np.ndarray]:
        """Irreducible representations, one per row of :meth:`character_table`.

        Returns
        -------
        list of np.ndarray
            Each ``[order, d, d]``, unitary; ``float64`` real orthogonal when the Frobenius–Schur
            indicator is +1, else ``complex128``. ``rho[table[a, b]] = rho[a] @ rho[b]`` to ~1e-12.
        """
        return [r.copy() for r in self._irreps]

    def _cayley_error(self, rho: np.ndarray) -> float:
        """``max |rho[g·h] - rho[g] rho[h]|`` over generators g and all h, and ``|rho[e] - I|``."""
        d = rho.shape[1]
        err = float(np.abs(rho[0] - np.eye(d)).max())
        for g in self.generators:
            err = max(err, float(np.abs(rho[self.table[g]] - rho[g][None] @ rho).max()))
        return err

    def _build_irrep(self, chi_el: np.ndarray, d: int, fs: int, rng: np.random.Generator) -> np.ndarray:
        N = self.order
        real = fs == 1
        if d == 1:
            vals = chi_el.real if real else chi_el
            return vals.reshape(N, 1, 1).astype(float if real else complex)
        dtype = float if real else complex
        table, inv = self.table, self.inverse
        # Columns of the isotypic projector P = (d/N) Σ_g conj chi(g) π(g): P[x, y] = (d/N) conj chi(x y⁻¹)
        n_cols = min(N, 2 * d * d + 8)
        for attempt in range(3):
            cols = rng.choice(N, size=n_cols, replace=False) if attempt < 2 else np.arange(N)
            Pc = (d / N) * np.conj(chi_el)[table[:, inv[cols]]]
            if real:
                Pc = Pc.real
            Usv, sv, _ = np.linalg.svd(Pc, full_matrices=False)
            if len(sv) >= d * d and sv[d * d - 1] > 1e-8 * sv[0]:
                break
        else:
            raise RuntimeError(f"isotypic subspace of a {d}-dim irrep of {self.name} not found")
        Q = Usv[:, : d * d].astype(dtype)  # [N, d²] orthonormal basis of the isotypic subspace
        # Split it with a random Hermitian element of the commutant (right translations).
        for attempt in range(4):
            n_h = min(N, 4 + 2 * d * (attempt + 1)) if attempt < 3 else N
            hs = rng.choice(N, size=n_h, replace=False)
            c = rng.normal(size=n_h) if real else rng.normal(size=n_h) + 1j * rng.normal(size=n_h)
            KQ = np.zeros_like(Q)
            for h, ch in zip(hs, c, strict=True):
                KQ += ch * Q[table[:, h]]  # (R(h) v)[x] = v[x·h]
            Kr = Q.conj().T @ KQ
            Kr = (Kr + Kr.conj().T) / 2
            w, V = np.linalg.eigh(Kr)
            scale = max(1e-300, float(np.abs(w).max()))
            if w[d - 1] - w[0] <= 1e-8 * scale and w[d] - w[d - 1] >= 1e-4 * scale:
                break
        else:
            raise RuntimeError(f"could not split the isotypic subspace of a {d}-dim irrep of {self.name}")
        B = Q @ V[:, :d]  # [N, d] orthonormal basis of one irreducible copy
        Bh = B.conj().T
        rho = np.empty((N, d, d), dtype=dtype)
        rho[0] = np.eye(d)
        gen_rho = np.stack([Bh @ B[table[inv[g]]] for g in self._gen_ids])  # (π(g)B)[x] = B[g⁻¹x]
        # Extend along the BFS tree layer by layer: rho(gen_k · p) = rho(gen_k) rho(p).
        depth = self._depth
        for layer in range(1, int(depth.max()) + 1 if N > 1 else 1):
            ids = np.nonzero(depth == layer)[0]
            rho[ids] = gen_rho[self._via[ids]] @ rho[self._parent[ids]]
        return rho

    # ---- representations --------------------------------------------------------------------

    def regular_representation(self) -> np.ndarray:
        """Left regular representation, float64 ``[order, order, order]``: ``R[g] e_h = e_{g·h}``.

        Memory is ``8·order³`` bytes (14 MB for order 120, 2.9 GB for 720): build only for small
        groups. Not cached.
        """
        N = self.order
        if N > 720:
            raise ValueError(f"regular representation of {self.name} (order {N}) would need {8 * N**3 / 2**30:.1f} GiB; limit is order 720")
        R = np.zeros((N, N, N))
        g, h = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
        R[g, self.table, h] = 1.0
        return R

    def permutation_representation(self) -> np.ndarray:
        """float64 ``[order, degree, degree]``: ``rho(p) e_i = e_{p(i)}``."""
        N, n = self.order, self.degree
        R = np.zeros((N, n, n))
        R[np.arange(N)[:, None], self.perms, np.arange(n)[None, :]] = 1.0
        return R

    def decompose(self, rep, atol: float = 1e-6) -> Decomposition:
        """Irrep multiplicities of a representation.

        Parameters
        ----------
        rep : array-like or torch.Tensor
            ``[order, n, n]``, ``rep[g]`` the matrix of element id ``g``.
        atol : float
            Tolerance for ``is_representation`` on both the multiplicity residual and the
            homomorphism error.

        Returns
        -------
        Decomposition
        """
        if hasattr(rep, "detach"):
            rep = rep.detach().cpu().numpy()
        rep = np.asarray(rep)
        if rep.ndim != 3 or rep.shape[0] != self.order or rep.shape[1] != rep.shape[2]:
            raise ValueError(
                f"rep has shape {rep.shape}; expected [order, n, n] = [{self.order}, n, n] for {self.name}"
            )
        if not np.isfinite(rep).all():
            raise ValueError("rep contains NaN or inf")
        rep = rep.astype(complex if np.iscomplexobj(rep) else float)
        class_of = self._classes[1]
        chi_rep = np.einsum("gii->g", rep)
        chi_el = self._characters["table"][:, class_of]  # [k, N]
        raw = chi_el.conj() @ chi_rep / self.order
        mult = np.rint(raw.real).astype(np.int64)
        residual = float(np.abs(raw - mult).max())
        hom = self._cayley_error(rep)
        return Decomposition(
            multiplicities=mult, raw=raw, residual=residual,
            is_representation=bool(residual <= atol and hom <= atol), homomorphism_error=hom,
            atol=atol, names=self.irrep_names(), dims=self.irrep_dims(),
        )


def _letters(i: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa, ... (spreadsheet columns)."""
    s = ""
    i += 1
    while i > 0:
        i, r = divmod(i - 1, 26)
        s = chr(97 + r) + s
    return s


@lru_cache(maxsize=64)
def _named_cached(name: str) -> Group:
    if name.startswith("perm:"):
        gens = parse_cycles(name[len("perm:"):])
        return Group.from_permutations(gens, name="perm:" + ",".join(cycle_string(g) for g in gens))
    factors = name.split("x")
    if any(not f for f in factors):
        raise ValueError(f"unknown group name {name!r}; accepted: {GROUP_NAMES_HELP}")
    gens, order = _product_generators(factors) if len(factors) > 1 else _named_generators(name)
    if order > MAX_ORDER:
        raise ValueError(f"group {name!r} has order {order} > {MAX_ORDER} (the supported limit); accepted: {GROUP_NAMES_HELP}")
    G = Group.from_permutations(gens, name=name)
    assert G.order == order, (name, G.order, order)
    return G
