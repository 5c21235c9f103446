"""`ModelConfig`: the contract configuration of every model in the workbench, with validation."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from workbench.variants import (  # noqa: F401 (re-exported)
    BASELINE_VARIANTS, BILINEAR_VARIANTS, COMPLEX_VARIANTS, DIAGONAL_VARIANTS, VARIANTS,
)


def _check_int(name: str, value, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        accepted = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{name}={value!r} is invalid; accepted: {accepted}")


@dataclass
class ModelConfig:
    """Configuration of a bilinear RNN or a baseline (the contract fields of checkpoints and the CLI).

    Parameters
    ----------
    variant : str
        One of ``full cp block rotation complex_diag real_diag positive_diag`` (bilinear
        family) or ``lstm gru elman transformer`` (baselines).
    d_vocab : int
        Number of input tokens V.
    d_hidden : int
        State size H (``d_model`` for the transformer).
    n_classes : int
        Number of output classes C.
    d_embed : int or None
        None: one-hot input (D = V). Otherwise a learned embedding ``W_E`` [V, D].
    rank : int or None
        CP rank R; required for ``cp`` and rejected elsewhere.
    block_size : int or None
        Block size b for ``block`` (must divide H; 1 = real diagonal); rejected elsewhere.
    n_layers : int
        Stacked layers for ``positive_diag`` and the baselines; must be 1 for the others.
    additive : bool
        Add ``x_t @ W_B + b_B`` to every update (the affine ablation). ``positive_diag`` is
        additive by definition, whatever this flag says.
    freeze_transition : bool
        Random transition parameters, frozen (``requires_grad=False``); only ``h0``, the
        readout (and embedding, additive input) train.
    normalize : bool or None
        Per-step L2 normalization of the state. None: on in eval mode, off in training mode
        (``positive_diag``: off, its states are bounded by construction and normalizing
        would change the function it computes). True/False force it.
    init_noise : float
        Transitions start at identity + ``init_noise / sqrt(H)`` Gaussian noise.

    Notes
    -----
    ``n_heads``, ``n_key_value_heads`` and ``device`` are not fields: they are read by
    TransformerLens's ``generic_activation_patch`` (``model.cfg.n_layers``, ``n_heads``,
    ``device``) and are derived (``device`` is kept in sync by the model's ``.to()``).
    """

    variant: str
    d_vocab: int
    d_hidden: int
    n_classes: int
    d_embed: int | None = None
    rank: int | None = None
    block_size: int | None = None
    n_layers: int = 1
    additive: bool = False
    freeze_transition: bool = False
    normalize: bool | None = None
    init_noise: float = 0.3

    def __post_init__(self):
        self.validate()
        # Not a dataclass field: the device the model lives on (TransformerLens patching
        # allocates its result tensor on model.cfg.device). Updated by the model.
        object.__setattr__(self, "device", "cpu")

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad value and the accepted forms."""
        if self.variant not in VARIANTS:
            raise ValueError(
                f"variant={self.variant!r} is unknown; accepted: {', '.join(VARIANTS)}")
        _check_int("d_vocab", self.d_vocab, 1)
        _check_int("d_hidden", self.d_hidden, 1)
        _check_int("n_classes", self.n_classes, 1)
        _check_int("d_embed", self.d_embed, 1, allow_none=True)
        _check_int("n_layers", self.n_layers, 1)
        for flag in ("additive", "freeze_transition"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag}={getattr(self, flag)!r}; accepted: True or False")
        if self.normalize is not None and not isinstance(self.normalize, bool):
            raise ValueError(f"normalize={self.normalize!r}; accepted: None, True or False")
        if isinstance(self.init_noise, bool) or not isinstance(self.init_noise, (int, float)) \
                or not self.init_noise >= 0:
            raise ValueError(f"init_noise={self.init_noise!r}; accepted: a float >= 0")
        v, H = self.variant, self.d_hidden
        if v == "cp":
            if self.rank is None:
                raise ValueError("rank=None for variant 'cp'; accepted: an int >= 1")
            _check_int("rank", self.rank, 1)
        elif self.rank is not None:
            raise ValueError(f"rank={self.rank!r} given for variant {v!r}; rank applies only "
                             "to 'cp' (accepted here: None)")
        if v == "block":
            if self.block_size is None:
                raise ValueError("block_size=None for variant 'block'; accepted: an int >= 1 "
                                 f"dividing d_hidden={H}")
            _check_int("block_size", self.block_size, 1)
            if H % self.block_size:
                divisors = [d for d in range(1, H + 1) if H % d == 0]
                raise ValueError(f"block_size={self.block_size} does not divide d_hidden={H}; "
                                 f"accepted: one of {divisors}")
        elif self.block_size is not None:
            raise ValueError(f"block_size={self.block_size!r} given for variant {v!r}; "
                             "block_size applies only to 'block' (accepted here: None)")
        if v in COMPLEX_VARIANTS and H % 2:
            raise ValueError(f"d_hidden={H} is odd; variant {v!r} needs an even d_hidden "
                             "(2x2 blocks)")
        if v in BILINEAR_VARIANTS and v != "positive_diag" and self.n_layers != 1:
            raise ValueError(f"n_layers={self.n_layers} for variant {v!r}; accepted: 1 "
                             "(only positive_diag and the baselines stack layers)")
        if v in BASELINE_VARIANTS:
            for flag in ("additive", "freeze_transition"):
                if getattr(self, flag):
                    raise ValueError(f"{flag}=True for baseline {v!r}; accepted: False "
                                     "(the flag applies to the bilinear family)")

    # ------------------------------------------------------------------ derived
    @property
    def is_bilinear(self) -> bool:
        return self.variant in BILINEAR_VARIANTS

    @property
    def d_input(self) -> int:
        """D, the size of the input vector x (V for one-hot)."""
        return self.d_vocab if self.d_embed is None else self.d_embed

    @property
    def n_heads(self) -> int:
        """Attention heads of the transformer baseline; 1 elsewhere (read by TL patching)."""
        if self.variant == "transformer":
            return next(h for h in (4, 2, 1) if self.d_hidden % h == 0)
        return 1

    @property
    def n_key_value_heads(self):
        return None

    @property
    def d_model(self) -> int:
        return self.d_hidden

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        """JSON-safe dict of the contract fields."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        if not isinstance(d, dict):
            raise ValueError(f"ModelConfig.from_dict expects a dict, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys {unknown}; accepted: {sorted(names)}")
        return cls(**d)
