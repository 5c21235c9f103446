"""One memory budget, and the checks that keep every size below it *before* anything is allocated.

The danger: a size typed by a user or read from a file (``--hidden 100000``, ``--batch 10**8``,
a ``config.json`` declaring ``d_hidden = 8000``) reaches ``torch.empty`` and either takes the
machine down or fails many seconds later with an allocator traceback. Every size that reaches an
allocation goes through :func:`check_bytes` with an estimate of what it will allocate, and is
refused with a :class:`LimitError` (a ``ValueError``) naming the field, the value and the
largest accepted value.

The budget is ``$WORKBENCH_MEMORY_BUDGET`` (``8GiB``, ``500MB``, ``2e9``; default
:data:`DEFAULT_BUDGET`), ``--memory-budget`` on the command line, or :func:`memory_budget_set`
in Python. The estimates are deliberately rough upper bounds (within a small factor); the budget
is a guard against sizes that are off by orders of magnitude, not an allocator.

No torch import here: the CLI validates flags with these functions before torch is loaded.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import types

from workbench.variants import BASELINE_VARIANTS, BILINEAR_VARIANTS

ENV_VAR = "WORKBENCH_MEMORY_BUDGET"
DEFAULT_BUDGET = 4 << 30  # 4 GiB: the zoo's largest run needs ~50 MB, so this only stops typos

#: int64 tokens, labels and automaton states: three [B, T] tensors per batch, plus the numpy
#: copy the automaton run makes.
BYTES_PER_SAMPLED_POSITION = 8 * 4
FLOAT_BYTES = 4

_override: int | None = None

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


class LimitError(ValueError):
    """A size or number outside what is accepted.

    ``field`` is the Python name (``batch_size``); the CLI rewrites it to its option
    (``--batch``) through :attr:`field`, :attr:`value` and :attr:`accepted`.
    """

    def __init__(self, field: str, value, accepted: str, detail: str = ""):
        self.field, self.value, self.accepted, self.detail = field, value, accepted, detail
        super().__init__(self.render(field))

    def render(self, name: str) -> str:
        value = self.value if not isinstance(self.value, int) or abs(self.value) < 10**15 \
            else f"{self.value:.3e}"
        detail = f" ({self.detail})" if self.detail else ""
        return f"{name}={value}{detail} is not accepted; accepted: {self.accepted}"


def format_bytes(n: float) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def parse_bytes(text) -> int:
    """``"8GiB"``, ``"500MB"``, ``"2e9"``, ``4096`` -> bytes (ValueError names the accepted forms)."""
    if isinstance(text, bool):
        raise ValueError(f"memory budget {text!r} is not a size; accepted: bytes like 8GiB, 500MB, 2e9")
    if isinstance(text, int):
        n = text
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        unit = m.group(2).lower() if m else None
        if not m or unit not in _UNITS:
            raise ValueError(f"memory budget {text!r} is not a size; accepted: bytes like 8GiB, "
                             "500MB, 2e9 (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")
        value = float(m.group(1)) * _UNITS[unit]
        if not math.isfinite(value):
            raise ValueError(f"memory budget {text!r} is not finite; accepted: bytes like 8GiB")
        n = int(value)
    if n < 1 << 20:
        raise ValueError(f"memory budget {text!r} is below 1 MiB; accepted: at least 1MiB, e.g. 8GiB")
    return n


def memory_budget() -> int:
    """The budget in bytes: :func:`memory_budget_set` > ``$WORKBENCH_MEMORY_BUDGET`` > default."""
    if _override is not None:
        return _override
    env = os.environ.get(ENV_VAR)
    if env:
        try:
            return parse_bytes(env)
        except ValueError as e:
            raise ValueError(f"${ENV_VAR}: {e}") from None
    return DEFAULT_BUDGET


@contextlib.contextmanager
def memory_budget_set(budget):
    """Use ``budget`` (bytes or a string like ``"16GiB"``; None = back to the default rule)
    inside the ``with`` block."""
    global _override
    old = _override
    _override = None if budget is None else parse_bytes(budget)
    try:
        yield
    finally:
        _override = old


def raise_budget_hint() -> str:
    return f"raise it with --memory-budget or ${ENV_VAR} (now {format_bytes(memory_budget())})"


# ---------------------------------------------------------------------------------------------
# scalar checks
# ---------------------------------------------------------------------------------------------

def check_int(field: str, value, lo: int = 1, hi: int | None = None) -> int:
    """``value`` as an int in ``[lo, hi]`` (bools and floats refused), else :class:`LimitError`."""
    try:
        import numpy as np
        integer = isinstance(value, (int, np.integer))
    except ImportError:  # pragma: no cover
        integer = isinstance(value, int)
    if isinstance(value, bool) or not integer:
        raise LimitError(field, repr(value), _int_range(lo, hi), "not an integer")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        raise LimitError(field, value, _int_range(lo, hi))
    return value


def _int_range(lo, hi) -> str:
    return f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"


def check_number(field: str, value, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = True) -> float:
    """A finite real number in the interval (NaN and inf refused), else :class:`LimitError`."""
    accepted = "a finite number" + (_interval(lo, hi, lo_open, hi_open) if lo is not None or hi is not None else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise LimitError(field, repr(value), accepted, "not a number")
    v = float(value)
    if not math.isfinite(v) or (lo is not None and (v < lo or (lo_open and v == lo))) \
            or (hi is not None and (v > hi or (hi_open and v == hi))):
        raise LimitError(field, v, accepted)
    return v


def _interval(lo, hi, lo_open, hi_open) -> str:
    a = "(" if lo_open or lo is None else "["
    b = ")" if hi_open or hi is None else "]"
    return f" in {a}{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}{b}"


MAX_SEED = 2**63 - 1


def check_seed(field: str, value) -> int:
    return check_int(field, value, 0, MAX_SEED)


# ---------------------------------------------------------------------------------------------
# the memory budget
# ---------------------------------------------------------------------------------------------

def check_bytes(field: str, value, n_bytes: float, what: str, per_unit: float | None = None) -> None:
    """Refuse ``value`` of ``field`` if it makes ``what`` need more than the budget.

    Parameters
    ----------
    field, value : the input responsible (named in the message).
    n_bytes : estimated bytes that ``what`` allocates with this value.
    what : what would be allocated, e.g. ``"the model's parameters"``.
    per_unit : bytes per unit of ``value`` when the cost is linear in it: the message then states
        the largest accepted value.
    """
    budget = memory_budget()
    if n_bytes <= budget:
        return
    if per_unit:
        largest = max(0, int(budget // per_unit))
        accepted = f"at most {largest:,} under the memory budget ({raise_budget_hint()})"
    else:
        accepted = f"a smaller value ({raise_budget_hint()})"
    raise LimitError(field, value, accepted, f"{what} would need {format_bytes(n_bytes)}")


def model_parameter_count(cfg) -> int:
    """Upper estimate of the number of parameters a ``ModelConfig`` builds (no torch)."""
    V, H, C = cfg.d_vocab, cfg.d_hidden, cfg.n_classes
    D = cfg.d_vocab if cfg.d_embed is None else cfg.d_embed
    n = H + H * C + (V * D if cfg.d_embed is not None else 0)
    v = cfg.variant
    if v == "full":
        n += H * H * D
    elif v == "cp":
        n += (2 * H + D) * (cfg.rank or 1)
    elif v == "block":
        n += H * (cfg.block_size or 1) * D
    elif v in ("rotation",):
        n += D * H // 2
    elif v in ("complex_diag", "real_diag"):
        n += D * H
    elif v == "positive_diag":
        n += cfg.n_layers * (2 * max(D, H) * H + 3 * H)
    else:  # lstm, gru, elman, transformer: at most 4 gates x (input + hidden) per layer,
        # the transformer's 12 H^2 per layer plus embeddings of a bounded context
        n += cfg.n_layers * 12 * H * (max(D, H) + 2) + V * H + 4096 * H
    if cfg.additive:
        n += D * H + H
    return int(n)


def dense_transition_bytes(cfg) -> int:
    """The fast path's per-token dense matrices ``[V, H, H]`` (every bilinear variant builds them)."""
    return cfg.d_vocab * cfg.d_hidden * cfg.d_hidden * FLOAT_BYTES


def model_bytes(cfg) -> int:
    """Parameters plus, for the bilinear variants with dense transitions, the fast path's
    per-token matrices ``[V, H, H]`` (float32)."""
    dense = dense_transition_bytes(cfg) if cfg.variant in DENSE_FAST_PATH else 0
    return model_parameter_count(cfg) * FLOAT_BYTES + dense


#: Bilinear variants whose fast path precomputes dense per-token matrices (positive_diag does not).
DENSE_FAST_PATH = tuple(v for v in BILINEAR_VARIANTS if v != "positive_diag")


def check_model_config(cfg) -> None:
    """Refuse a model whose parameters (or its per-token transition matrices) exceed the budget.

    Called by ``ModelConfig.validate``, so ``build_model``, ``load_checkpoint`` and ``train``
    all refuse before allocating. The message states the largest hidden size that fits.
    """
    need = model_bytes(cfg)
    budget = memory_budget()
    if need <= budget:
        return
    D = cfg.d_vocab if cfg.d_embed is None else cfg.d_embed
    if cfg.rank:
        check_bytes("rank", cfg.rank, (2 * cfg.d_hidden + D) * cfg.rank * FLOAT_BYTES,
                    "the cp factors", (2 * cfg.d_hidden + D) * FLOAT_BYTES)
    if cfg.d_embed:
        check_bytes("d_embed", cfg.d_embed, cfg.d_vocab * cfg.d_embed * FLOAT_BYTES,
                    "the embedding", cfg.d_vocab * FLOAT_BYTES)
    fields = {k: getattr(cfg, k) for k in ("variant", "d_vocab", "d_hidden", "n_classes", "d_embed",
                                            "rank", "block_size", "n_layers", "additive")}

    def fits(h):
        return model_bytes(types.SimpleNamespace(**{**fields, "d_hidden": h})) <= budget

    lo, hi = 0, int(cfg.d_hidden)
    while lo < hi:  # largest h that fits (model_bytes grows with h)
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    accepted = (f"at most {lo:,} for this variant and task under the memory budget "
                f"({raise_budget_hint()})") if lo >= 1 else \
        f"nothing fits: d_vocab={cfg.d_vocab}, d_embed={cfg.d_embed} or rank={cfg.rank} too large ({raise_budget_hint()})"
    raise LimitError("d_hidden", cfg.d_hidden, accepted,
                     f"the {cfg.variant} model's weights would need {format_bytes(need)}")


def forward_bytes(cfg, batch: int, length: int, training: bool = False) -> int:
    """Rough upper bound of one forward pass on ``[batch, length]`` (backward included when training).

    States, outputs and logits ``[B, T, H or C]``; the fast path's per-step product
    ``h @ [A_1 ... A_V]`` ``[B, V*H]``; the transformer's attention ``[B, heads, T, T]``. Training
    keeps every step's activations for backward (a factor of a few).
    """
    H, C, V = cfg.d_hidden, cfg.n_classes, cfg.d_vocab
    per_pos = (4 * H + C + (cfg.d_embed or 0)) * FLOAT_BYTES * max(1, cfg.n_layers)
    n = batch * length * per_pos + batch * V * H * FLOAT_BYTES
    if cfg.variant == "transformer":
        n += batch * 4 * length * length * FLOAT_BYTES * max(1, cfg.n_layers)
    if training:
        n *= 6 if cfg.variant in BASELINE_VARIANTS else 4
    return int(n)


def check_sampled(field: str, value, batch: int, length: int, what: str) -> None:
    """Refuse a ``[batch, length]`` token/label/state batch above the budget."""
    per_unit = None if " x " in field else \
        BYTES_PER_SAMPLED_POSITION * (length if field in ("batch_size", "n_sequences") else batch)
    check_bytes(field, value, BYTES_PER_SAMPLED_POSITION * batch * length, what, per_unit)


def check_permutation_degree(degree: int, max_order: int) -> None:
    """Up to ``max_order`` permutations of ``degree`` points (numpy rows and their lookup keys)."""
    per_point = max_order * 2 * 8
    check_bytes("degree", degree, degree * per_point,
                f"the closure of up to {max_order} permutations of {degree:,} points", per_point)


def check_dense_hook(name: str, batch: int, length: int, hidden: int, itemsize: int = FLOAT_BYTES) -> None:
    """Refuse building a dense ``[B, T, H, H]`` hook value (``hook_transition``) above the budget."""
    need = batch * length * hidden * hidden * itemsize
    budget = memory_budget()
    if need > budget:
        raise LimitError(
            "tokens", f"[{batch}, {length}]",
            f"a batch x length whose dense transitions fit the memory budget: at most "
            f"{max(0, budget // max(1, length * hidden * hidden * itemsize)):,} sequences of this "
            f"length; hook or cache fewer sequences, or {raise_budget_hint()}",
            f"a hook on {name} makes the model build [B, T, H, H] = [{batch}, {length}, {hidden}, "
            f"{hidden}] = {format_bytes(need)}")
