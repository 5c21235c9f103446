"""Hand-built exact weights: every (task, variant) pair that has a known exact solution.

`construct(task, variant="full", representation=None)` returns a ready model (eval mode, per-step
normalization on) whose final-step accuracy is 100 % at any length. The constructions
(from the paper's proofs):

* **FSM tensor** (`representation="fsm"`, the default for full / cp, any task: every task has an
  automaton, modular arithmetic included): H = |Q|, one-hot states, `A_σ[q', q] = 1` iff
  `δ(q, σ) = q'`, `h0 = e_start`, readout `W_U[q, c] = 1` iff state q outputs label c. Each
  `A_σ` has one 1 per column, so one-hot states stay exactly one-hot: no drift at any length.
* **its exact CP form** (variant cp): one rank-1 term per non-zero, `e_q' ⊗ e_q ⊗ e_σ`, rank
  |Q|·|Σ|. Any other construction goes to cp the same way, one term per non-zero column.
* **group tasks through a representation** rho (`"regular"`, `"permutation"` = the defining
  action, an irrep name, or a list of irrep names = their direct sum): `A_v = rho(g_v)`, real
  orthogonal (irreps are unitary; a complex or quaternionic irrep enters through its real form
  `[[Re, -Im], [Im, Re]]`, which as a complex representation is the irrep plus its conjugate).
  Decoding: `h0` is chosen so that the orbit `{rho(g) h0}` is injective (possible iff rho is
  faithful: a generic vector is fixed by no non-identity element) and the readout column of
  the label of g is the orbit point `rho(g) h0`. All orbit points have the same norm (rho is
  orthogonal), so by Cauchy–Schwarz `<rho(s) h0, rho(g) h0>` is largest exactly at g = s: the
  argmax of the logits is the state. The margin (the gap between the best and second logit,
  relative) is checked at construction and reported as `model.construction_margin`.
* **rotation solution** of abelian groups (`representation="rotation"`, default for rotation,
  complex_diag and block on `cyclic:m` and parity): one 2×2 rotation block `R(arg χ(g_v))` per
  character χ of a set of characters with trivial common kernel; for `cyclic:m` the single
  character χ(a) = e^{2πia/m}, i.e. `A_a = R(2πa/m)`, `h0 = (1, 0)`, readout columns
  `(cos 2πc/m, sin 2πc/m)`. As cp it has rank 3 per block (Gauss's three-multiplication trick
  for complex products), below the paper's bound of 4.
* **sign units** (real_diag, default `"sign"`): one unit per real ±1 character, `A_v =
  diag(χ(g_v))`; parity is one unit with `a(0) = +1, a(1) = -1`. Only elementary abelian
  2-groups are faithful this way (Prop. 3 of the paper: real diagonals do parity, not Z3).

A construction that cannot be exact raises ValueError saying why (non-abelian group in a
commuting variant, unfaithful representation, positive_diag or a baseline).
"""

from __future__ import annotations

import numpy as np

from workbench.variants import COMPLEX_VARIANTS, CONSTRUCTIBLE_DIAGONAL, CONSTRUCTIBLE_VARIANTS, DENSE_VARIANTS

__all__ = [
    "CONSTRUCTIBLE_VARIANTS",
    "construct",
    "task_group",
    "representation_matrices",
    "representation_names",
    "orbit_start_state",
    "label_of_elements",
]

_NAMED = ("fsm", "regular", "permutation", "rotation", "sign")


def task_group(task):
    """(group, token_elements [V]) of a group-structured task; ValueError otherwise."""
    group = getattr(task, "group", None)
    elements = getattr(task, "token_elements", None)
    if group is None or elements is None:
        raise ValueError(f"task {getattr(task, 'spec', task)!r} is not a group task (no group / token elements); "
                         "group analyses need group:NAME, group:NAME/gens, cyclic:m or parity")
    return group, np.asarray(elements, dtype=np.int64)


def label_of_elements(task) -> np.ndarray:
    """Label emitted in the state of each group element: int array [order].

    Group-structured tasks number their automaton states by element id (docs/internals.md); this
    is checked against the transition table rather than assumed.
    """
    group, elements = task_group(task)
    aut = task.automaton
    if aut.n_states != group.order or aut.start != 0 or not np.array_equal(
            aut.transitions, group.table[elements][:, :].T):
        raise ValueError(f"task {task.spec!r}: automaton states are not the group elements "
                         "(transitions[q, v] != table[token_elements[v], q])")
    return np.asarray(aut.outputs, dtype=np.int64)


def _as_task(task):
    if isinstance(task, str):
        from workbench.tasks import make_task

        return make_task(task)
    if not hasattr(task, "automaton"):
        raise ValueError(f"task must be a Task or a task spec string, got {type(task).__name__}")
    return task


def _irrep_index(group, name) -> int:
    names = group.irrep_names()
    if name not in names:
        raise ValueError(f"unknown representation {name!r} for {group.name}; accepted: {list(_NAMED)}, "
                         f"an irrep name {names}, or a list of irrep names")
    return names.index(name)


def _realify(rep: np.ndarray) -> np.ndarray:
    """[[Re, -Im], [Im, Re]]: the real form of a complex representation (see module docstring)."""
    return np.block([[rep.real, -rep.imag], [rep.imag, rep.real]])


def _irrep_real(group, i: int) -> np.ndarray:
    """Irrep i as a real orthogonal representation: itself if FS = +1, else its real form."""
    pi = group.irreps()[i]
    if group.frobenius_schur()[i] == 1:
        return np.asarray(pi.real, dtype=np.float64)
    return _realify(np.asarray(pi))


def _direct_sum(reps: list[np.ndarray]) -> np.ndarray:
    order = reps[0].shape[0]
    n = sum(r.shape[1] for r in reps)
    out = np.zeros((order, n, n))
    i = 0
    for r in reps:
        out[:, i:i + r.shape[1], i:i + r.shape[1]] = r
        i += r.shape[1]
    return out


def _kernel(rho: np.ndarray, atol: float = 1e-9) -> list[int]:
    n = rho.shape[1]
    return [int(g) for g in np.nonzero(np.abs(rho - np.eye(n)).max(axis=(1, 2)) <= atol)[0]]


def _rotation_characters(group) -> list[int]:
    """Irreps (all 1-dim) whose characters have trivial common kernel, few and small angles first.

    For Z_m this is the character with χ(1) = e^{2πi/m}; in general a greedy cover of the
    non-identity elements, one character per pair {χ, conj χ}.
    """
    if not _is_abelian(group):
        raise ValueError(f"{group.name} is not abelian: commuting transitions (rotation, complex_diag, "
                         "real_diag) cannot represent it faithfully (Prop. 2); use full, cp or block")
    chars = group.character_table()  # abelian: classes = elements, in element order
    cls = group.conjugacy_classes()
    by_element = np.zeros_like(chars)
    for j, c in enumerate(cls):
        by_element[:, c] = chars[:, [j]]
    gens = group.generators
    # prefer the character that sends the first generator to the smallest positive angle
    angles = np.mod(np.angle(by_element[:, gens[0]]), 2 * np.pi) if gens else np.zeros(len(chars))
    order_pref = sorted(range(len(chars)), key=lambda i: (angles[i] <= 1e-9, angles[i], i))
    alive = np.ones(group.order, dtype=bool)
    alive[0] = False
    chosen = []
    for i in order_pref:
        moved = np.abs(by_element[i] - 1) > 1e-9
        if np.any(moved & alive):
            chosen.append(i)
            alive &= ~moved
        if not alive.any():
            break
    return chosen


def representation_matrices(task, representation, complex_form: bool = False) -> tuple[np.ndarray, list[int], str]:
    """Real orthogonal representation of a group task's group, as chosen.

    Parameters
    ----------
    task : group task.
    representation : "regular", "permutation", "rotation", "sign", an irrep name, or a list of
        irrep names (direct sum; complex / quaternionic irreps enter through their real form).
    complex_form : bool
        Give every irrep its 2d-dim real form `[[Re, -Im], [Im, Re]]`, real ones included (a
        real ±1 character becomes the rotation by 0 or π): what rotation blocks need.

    Returns
    -------
    rho : float array [order, n, n]
    block_dims : list[int]
        Dimensions of the direct summands, in order.
    label : str
        Readable name, e.g. "3a+trivial".
    """
    group, _ = task_group(task)
    if isinstance(representation, str) and representation == "regular":
        return np.asarray(group.regular_representation(), dtype=np.float64), [group.order], "regular"
    if isinstance(representation, str) and representation == "permutation":
        P = np.asarray(group.permutation_representation(), dtype=np.float64)
        return P, [P.shape[1]], "permutation"
    if isinstance(representation, str) and representation in ("rotation", "sign"):
        idx = _rotation_characters(group)
        if representation == "sign":
            fs = group.frobenius_schur()
            bad = [group.irrep_names()[i] for i in idx if fs[i] != 1]
            if bad:
                raise ValueError(f"{group.name} needs complex characters {bad}: real ±1 units (real_diag) "
                                 "represent only elementary abelian 2-groups (parity, Z2xZ2, ...)")
        names = [group.irrep_names()[i] for i in idx]
        reps = [_realify(group.irreps()[i]) if representation == "rotation" else group.irreps()[i].real
                for i in idx]
        return _direct_sum(reps), [r.shape[1] for r in reps], "+".join(names)
    names = [representation] if isinstance(representation, str) else list(representation)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"representation must be one of {list(_NAMED)}, an irrep name or a list of irrep "
                         f"names {group.irrep_names()}, got {representation!r}")
    idx = [_irrep_index(group, n) for n in names]
    reps = [_realify(group.irreps()[i]) if complex_form else _irrep_real(group, i) for i in idx]
    return _direct_sum(reps), [r.shape[1] for r in reps], "+".join(names)


def representation_names(multiplicities, irrep_names, frobenius_schur, conjugates) -> list[str]:
    """Irrep-name list whose real construction has the given (complex) multiplicities.

    A real representation contains a complex irrep (FS = 0) as often as its conjugate and a
    quaternionic one (FS = -1) an even number of times; the real form of one name covers
    `pi ⊕ conj(pi)` resp. `2 pi`, so each such pair is listed once.
    """
    out = []
    for i, m in enumerate(np.asarray(multiplicities)):
        if m <= 0:
            continue
        if frobenius_schur[i] == 1:
            out += [irrep_names[i]] * int(m)
        elif frobenius_schur[i] == 0:
            if conjugates[i] > i:
                out += [irrep_names[i]] * int(m)
        else:
            out += [irrep_names[i]] * (int(m) // 2)
    return out


def orbit_start_state(rho: np.ndarray, n_candidates: int = 32, seed: int = 0,
                      block_dims: list[int] | None = None) -> tuple[np.ndarray, float]:
    """Unit start state whose orbit `{rho(g) h0}` is as well separated as possible.

    Candidates: the first basis vector (the regular representation's best), the vector
    (1, 2, …, n) (distinct entries: a free orbit under any permutation representation), and
    seeded random unit vectors. Score: the smallest gap `1 - <p_s, p_g>` over pairs s != g of
    orbit points (unit vectors, rho orthogonal): positive iff the orbit is injective. Candidates
    with no component in one of the direct summands (`block_dims`, in order) are skipped, so
    that every summand asked for is reached. A
    structured candidate within 10 % of the best margin wins (readability).

    Returns
    -------
    h0 : float array [n]
    margin : float
    """
    n = rho.shape[1]
    rng = np.random.default_rng(seed)
    cands = [np.eye(n)[0], np.arange(1.0, n + 1)] + [rng.normal(size=n) for _ in range(n_candidates)]
    margins = []
    for c in cands:
        c = c / np.linalg.norm(c)
        pts = rho @ c
        edges = np.cumsum([0] + list(block_dims or [n]))
        if any(np.linalg.norm(c[a:b]) < 1e-6 for a, b in zip(edges[:-1], edges[1:], strict=True)):
            # the start state misses a summand (e.g. e_0 inside one block of a direct sum): the
            # model would decode, but it would reach a smaller representation than asked for
            margins.append(-np.inf)
            continue
        gram = pts @ pts.T
        np.fill_diagonal(gram, -np.inf)
        margins.append(float(1 - gram.max()) if len(pts) > 1 else 1.0)
    best = int(np.argmax(margins))
    # Prefer the structured candidates when nearly as good: e_0 makes the regular representation
    # the FSM construction exactly (one-hot states), which is easier to read.
    for i in (0, 1):
        if margins[i] >= 0.9 * margins[best] and margins[i] > 0:
            best = i
            break
    return cands[best] / np.linalg.norm(cands[best]), margins[best]


def _bilinear_params(variant: str, A: np.ndarray, block_dims: list[int], angles=None, diag=None):
    """Parameters of `variant` that realise the token matrices A [V, H, H]; returns (cfg extras, params)."""
    V, H, _ = A.shape
    if variant == "full":
        return {}, {"W": np.transpose(A, (1, 2, 0))}
    if variant == "cp":
        # one rank-1 term per non-zero column of each A_v: A_v = Σ_j A_v[:, j] e_jᵀ
        outs, ins, gates = [], [], []
        for v in range(V):
            for j in range(H):
                col = A[v][:, j]
                if np.any(col != 0):
                    outs.append(col)
                    ins.append(np.eye(H)[j])
                    g = np.zeros(V)
                    g[v] = 1.0
                    gates.append(g)
        R = len(outs)
        return {"rank": R}, {"W_out": np.stack(outs, 1), "W_in": np.stack(ins, 1), "W_gate": np.stack(gates, 1)}
    if variant == "block":
        b = block_dims[0] if len(set(block_dims)) == 1 else H
        nb = H // b
        blocks = np.zeros((nb, b, b, V))
        for n in range(nb):
            blocks[n] = np.transpose(A[:, n * b:(n + 1) * b, n * b:(n + 1) * b], (1, 2, 0))
        return {"block_size": b}, {"W_blocks": blocks}
    if variant == "rotation":
        return {}, {"W_angle": angles}
    if variant == "complex_diag":
        return {}, {"W_re": np.cos(angles), "W_im": np.sin(angles)}
    if variant == "real_diag":
        return {}, {"W_diag": diag}
    raise ValueError(f"variant {variant!r} has no construction; accepted: {list(CONSTRUCTIBLE_VARIANTS)}")


def _rotation_cp(angles: np.ndarray) -> dict:
    """CP form of rotation blocks R(θ) = cos θ I + sin θ J, rank 3 per block (Gauss's trick).

    With h = (h1, h2): k1 = cos·h1, k2 = sin·h2, k3 = (cos + sin)(h1 + h2); then
    out1 = k1 - k2 = cos h1 - sin h2 and out2 = k3 - k1 - k2 = sin h1 + cos h2.
    """
    V, nb = angles.shape
    H = 2 * nb
    W_out = np.zeros((H, 3 * nb))
    W_in = np.zeros((H, 3 * nb))
    W_gate = np.zeros((V, 3 * nb))
    for n in range(nb):
        i, j, r = 2 * n, 2 * n + 1, 3 * n
        W_in[i, r] = 1
        W_in[j, r + 1] = 1
        W_in[[i, j], r + 2] = 1
        W_out[[i, j], r] = [1, -1]
        W_out[[i, j], r + 1] = [-1, -1]
        W_out[j, r + 2] = 1
        W_gate[:, r] = np.cos(angles[:, n])
        W_gate[:, r + 1] = np.sin(angles[:, n])
        W_gate[:, r + 2] = np.cos(angles[:, n]) + np.sin(angles[:, n])
    return {"W_out": W_out, "W_in": W_in, "W_gate": W_gate}


def _set_params(model, params: dict) -> None:
    import torch

    named = dict(model.named_parameters())
    named.update({k: v for k, v in model.named_buffers()})
    for name, value in params.items():
        keys = [k for k in named if k == name or k.endswith("." + name)]
        if len(keys) != 1:
            raise RuntimeError(f"model has {len(keys)} parameters named {name!r} (found {sorted(named)}); "
                               "docs/internals.md pins these names")
        p = named[keys[0]]
        value = torch.as_tensor(np.asarray(value), dtype=p.dtype)
        if tuple(p.shape) != tuple(value.shape):
            raise RuntimeError(f"parameter {name!r} has shape {tuple(p.shape)}, construction gives {tuple(value.shape)}")
        with torch.no_grad():
            p.copy_(value)


def construct(task, variant: str = "full", representation=None):
    """Exact hand-built model for a task.

    Parameters
    ----------
    task : Task or spec string.
    variant : one of ``workbench.variants.CONSTRUCTIBLE_VARIANTS``
    representation : None, "fsm", "regular", "permutation", "rotation", "sign", an irrep name, or
        a list of irrep names (group tasks only, except "fsm"). None picks the variant's default:
        "fsm" for full and cp; "rotation" for rotation, complex_diag and (abelian groups) block,
        else "fsm" for block; "sign" for real_diag.

    Returns
    -------
    model : eval mode, `normalize=None` (on in eval). Attributes added: `construction`
        (a readable name, e.g. "full:fsm", "rotation:1a") and `construction_margin` (the decoding
        margin: 1 for one-hot states; `1 - max <p_s, p_g>` over distinct orbit points otherwise).
    """
    task = _as_task(task)
    if variant not in CONSTRUCTIBLE_VARIANTS:
        raise ValueError(f"variant {variant!r} has no exact construction; accepted: {list(CONSTRUCTIBLE_VARIANTS)} "
                         "(positive_diag and the baselines cannot track state at every length)")
    group = getattr(task, "group", None)
    is_group = group is not None and getattr(task, "token_elements", None) is not None
    if representation is None:
        if variant in ("full", "cp"):
            representation = "fsm"
        elif variant == "real_diag":
            representation = "sign"
        elif variant == "block":
            representation = "rotation" if is_group and _is_abelian(group) else "fsm"
        else:
            representation = "rotation"
    if representation != "fsm" and not is_group:
        raise ValueError(f"representation {representation!r} needs a group task; {task.spec!r} is not one "
                         "(its construction is representation='fsm' with variant full, cp or block)")

    V = task.d_vocab
    angles = diag = None
    if representation == "fsm":
        if variant not in DENSE_VARIANTS:
            raise ValueError(f"the FSM construction needs dense transitions (full, cp or block); got {variant!r}"
                             + ("; for this group task try representation='rotation'" if is_group else ""))
        aut = task.automaton
        H = aut.n_states
        A = np.zeros((V, H, H))
        A[np.arange(V)[None, :], aut.transitions, np.arange(H)[:, None]] = 1.0
        h0 = np.eye(H)[aut.start]
        W_U = np.zeros((H, task.n_classes))
        W_U[np.arange(H), aut.outputs] = 1.0
        block_dims, label, margin = [H], "fsm", 1.0
    else:
        rho, block_dims, label = representation_matrices(
            task, representation, complex_form=variant in COMPLEX_VARIANTS)
        _, elements = task_group(task)
        A = rho[elements]
        ker = _kernel(rho)
        if len(ker) > 1:
            raise ValueError(f"representation {label!r} of {group.name} is not faithful (kernel of {len(ker)} "
                             "elements): states cannot tell those elements apart; add irreps until faithful, "
                             "or use 'regular' or 'permutation'")
        labels = label_of_elements(task)
        if len(set(labels.tolist())) != group.order:
            raise ValueError(f"task {task.spec!r} gives the same label to several elements; decode via "
                             "representation='fsm' instead")
        H = rho.shape[1]
        if variant in CONSTRUCTIBLE_DIAGONAL:
            if representation not in ("rotation", "sign") and not all(d == (1 if variant == "real_diag" else 2)
                                                                       for d in block_dims):
                raise ValueError(f"variant {variant!r} needs {'1' if variant == 'real_diag' else '2'}-dim real "
                                 f"blocks; {label!r} has blocks of sizes {block_dims}")
            if variant == "real_diag":
                if representation == "rotation":
                    raise ValueError("real_diag takes ±1 units: use representation='sign'")
                diag = np.stack([np.diag(a) for a in A])  # [V, H]
                if not np.allclose(A, np.stack([np.diag(d) for d in diag])):
                    raise ValueError(f"representation {label!r} is not diagonal: not a real_diag construction")
            else:
                if representation == "sign":
                    raise ValueError(f"{variant} takes 2×2 rotation blocks: use representation='rotation'")
                angles = np.arctan2(A[:, 1::2, 0::2].diagonal(axis1=1, axis2=2),
                                    A[:, 0::2, 0::2].diagonal(axis1=1, axis2=2))  # [V, H/2]
        h0, margin = orbit_start_state(rho, block_dims=block_dims)
        if not margin > 1e-6:
            raise ValueError(f"no start state separates the orbit of {label!r} (margin {margin:.1e})")
        points = rho @ h0  # [order, H], unit vectors
        W_U = np.zeros((H, task.n_classes))
        W_U[:, labels] = points.T

    from workbench.models import ModelConfig, build_model

    extras, params = _bilinear_params(variant, A, block_dims, angles, diag)
    if variant == "cp" and representation == "rotation":
        ang = np.arctan2(A[:, 1::2, 0::2].diagonal(axis1=1, axis2=2), A[:, 0::2, 0::2].diagonal(axis1=1, axis2=2))
        if np.allclose(A, _rotation_blocks(ang)):
            params = _rotation_cp(ang)
            extras = {"rank": params["W_out"].shape[1]}
    cfg = ModelConfig(variant=variant, d_vocab=V, d_hidden=H, n_classes=task.n_classes, **extras)
    model = build_model(cfg)
    params.update({"h0": h0, "W_U": W_U})
    _set_params(model, params)
    model.eval()
    import torch

    with torch.no_grad():
        got = model.transition_matrices().double().numpy()
    if not np.allclose(got, A, atol=1e-5):
        raise RuntimeError(f"construction {variant}:{label} does not reproduce its matrices "
                           f"(max error {np.abs(got - A).max():.2e}): parameter convention mismatch")
    model.construction = f"{variant}:{label}"
    model.construction_margin = float(margin)
    return model


def _rotation_blocks(angles: np.ndarray) -> np.ndarray:
    """Block-diagonal rotations R(θ) = [[cos, -sin], [sin, cos]]: [V, H/2] -> [V, H, H]."""
    V, nb = angles.shape
    out = np.zeros((V, 2 * nb, 2 * nb))
    c, s = np.cos(angles), np.sin(angles)
    for n in range(nb):
        out[:, 2 * n, 2 * n] = c[:, n]
        out[:, 2 * n, 2 * n + 1] = -s[:, n]
        out[:, 2 * n + 1, 2 * n] = s[:, n]
        out[:, 2 * n + 1, 2 * n + 1] = c[:, n]
    return out


def _is_abelian(group) -> bool:
    """From the table, whatever form the Group exposes `is_abelian` in."""
    return bool((group.table == group.table.T).all())


def disguise(model, task, hidden: int, rng, noise: float = 0.0, scales=(0.5, 2.0)):
    """A ``full`` model computing the same function as ``model`` behind the symmetries an analysis
    must see through: a random non-orthogonal change of basis of a larger space ``[hidden]``, a
    random positive scale per token, contracting junk on the unreached directions (coupled into
    the reached ones) and optional Gaussian noise on every matrix.

    For planting known answers: the representation, comparison and spectra analyses must recover
    ``model``'s structure from the result. ``rng`` is a ``numpy.random.Generator``.
    """
    import numpy as np
    import torch

    from workbench.models import ModelConfig, build_model

    A = model.transition_matrices().double().numpy()
    V, r, _ = A.shape
    if hidden <= r:
        raise ValueError(f"hidden={hidden} must exceed the model's hidden size {r}")
    P = rng.normal(size=(hidden, hidden)) + 2 * np.eye(hidden)
    Pi = np.linalg.inv(P)
    B = np.zeros((V, hidden, hidden))
    for v in range(V):
        M = np.zeros((hidden, hidden))
        M[:r, :r] = A[v]
        M[:r, r:] = 0.3 * rng.normal(size=(r, hidden - r))
        M[r:, r:] = 0.3 / np.sqrt(hidden - r) * rng.normal(size=(hidden - r, hidden - r))  # contracting
        B[v] = rng.uniform(*scales) * P @ M @ Pi + noise * rng.normal(size=(hidden, hidden))
    new = build_model(ModelConfig("full", task.d_vocab, hidden, task.n_classes))
    new.set_transition_matrices(B)
    h0 = P @ np.r_[model.h0.detach().double().numpy(), np.zeros(hidden - r)]
    W_U = Pi.T @ np.r_[model.W_U.detach().double().numpy(), rng.normal(size=(hidden - r, task.n_classes))]
    with torch.no_grad():
        new.h0.copy_(torch.tensor(h0))
        new.W_U.copy_(torch.tensor(W_U))
    return new.eval()
