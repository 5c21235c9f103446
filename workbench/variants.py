"""The one registry of model variants: names, families, structure classes and zoo keys.

Every module that needs a list of variants reads it here. This module imports nothing heavy
(no torch, no TransformerLens) so that the CLI, the checkpoint reader and the analyses can use
it without paying for the model code.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Variant:
    """One architecture ``ModelConfig.variant`` accepts.

    family : "bilinear" (``h_t = A(x_t) h_{t-1}``) or "baseline" (LSTM, GRU, Elman, transformer).
    diagonal : the transition is elementwise (possibly complex); the others are dense.
    complex_pairs : the state is read as complex pairs (2x2 rotation-scale blocks).
    structured : the recipe initialises it with the larger noise (see ``training.init_noise_for``).
    constructible : ``workbench.constructions.construct`` has an exact construction for it.
    stacks_layers : ``n_layers > 1`` is allowed.
    affine : the update always adds an input term (no linear representation to recover).
    param_hook : the variant-specific parameter hook (None: the transition itself).
    torch_module : the ``torch.nn`` class name of a recurrent baseline.
    """

    name: str
    family: str
    diagonal: bool = False
    complex_pairs: bool = False
    structured: bool = False
    constructible: bool = False
    stacks_layers: bool = False
    affine: bool = False
    param_hook: str | None = None
    torch_module: str | None = None    # the torch.nn class of a recurrent baseline


REGISTRY: tuple[Variant, ...] = (
    Variant("full", "bilinear", constructible=True),
    Variant("cp", "bilinear", structured=True, constructible=True, param_hook="hook_gates"),
    Variant("block", "bilinear", structured=True, constructible=True, param_hook="hook_blocks"),
    Variant("rotation", "bilinear", diagonal=True, complex_pairs=True, structured=True,
            constructible=True, param_hook="hook_angles"),
    Variant("complex_diag", "bilinear", diagonal=True, complex_pairs=True, structured=True,
            constructible=True, param_hook="hook_diag"),
    Variant("real_diag", "bilinear", diagonal=True, constructible=True, param_hook="hook_diag"),
    Variant("positive_diag", "bilinear", diagonal=True, stacks_layers=True, affine=True,
            param_hook="hook_diag"),
    Variant("lstm", "baseline", stacks_layers=True, torch_module="LSTM"),
    Variant("gru", "baseline", stacks_layers=True, torch_module="GRU"),
    Variant("elman", "baseline", stacks_layers=True, torch_module="RNN"),
    Variant("transformer", "baseline", stacks_layers=True),
)
BY_NAME: dict[str, Variant] = {v.name: v for v in REGISTRY}

VARIANTS = tuple(v.name for v in REGISTRY)
BILINEAR_VARIANTS = tuple(v.name for v in REGISTRY if v.family == "bilinear")
BASELINE_VARIANTS = tuple(v.name for v in REGISTRY if v.family == "baseline")
#: Elementwise transitions (the "diagonal class" of the paper's hierarchy); the others are dense.
DIAGONAL_VARIANTS = tuple(v.name for v in REGISTRY if v.diagonal)
#: Bilinear variants with dense per-token matrices (the ones an FSM construction fits).
DENSE_VARIANTS = tuple(v.name for v in REGISTRY if v.family == "bilinear" and not v.diagonal)
#: Diagonal variants whose state is read as complex pairs.
COMPLEX_VARIANTS = tuple(v.name for v in REGISTRY if v.complex_pairs)
STRUCTURED_VARIANTS = tuple(v.name for v in REGISTRY if v.structured)
CONSTRUCTIBLE_VARIANTS = tuple(v.name for v in REGISTRY if v.constructible)
CONSTRUCTIBLE_DIAGONAL = tuple(v for v in CONSTRUCTIBLE_VARIANTS if v in DIAGONAL_VARIANTS)
PARAM_HOOKS = {v.name: v.param_hook for v in REGISTRY if v.family == "bilinear"}
#: Recurrent baselines built on torch.nn RNN modules.
RNN_BASELINES = tuple(v.name for v in REGISTRY if v.torch_module)


def get(name: str) -> Variant:
    """The registry entry of ``name``; ``ValueError`` naming the accepted names otherwise."""
    if name not in BY_NAME:
        raise ValueError(f"variant={name!r} is unknown; accepted: {', '.join(VARIANTS)}")
    return BY_NAME[name]


def is_linear(name: str, additive: bool = False) -> bool:
    """True if the update of this variant is linear in the state (a representation can exist)."""
    v = get(name)
    return v.family == "bilinear" and not (additive or v.affine)


# ---------------------------------------------------------------------------------------------
# zoo keys: a variant plus the fixed architecture options of one row of the paper's table
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ZooKey:
    """One row of the zoo. ``options`` are ``TrainConfig`` fields fixed by the key;
    ``sec_per_step`` and ``sec_per_run`` are the rough cost model of ``zoo build --dry-run``
    (measured: one thread, lengths 2-10, batch 64, the 2-core machine shared)."""

    key: str
    variant: str
    options: dict = field(default_factory=dict)
    dense: bool = False             # per-token dense matrices: cost grows with the vocabulary
    sec_per_step: float = 3e-3
    sec_per_run: float = 3.0


ZOO_REGISTRY: tuple[ZooKey, ...] = (
    ZooKey("full", "full", dense=True, sec_per_step=3e-3),
    ZooKey("cp", "cp", dense=True, sec_per_step=3e-3),
    ZooKey("block1", "block", {"block_size": 1}, dense=True, sec_per_step=2.5e-3),
    ZooKey("block2", "block", {"block_size": 2}, dense=True, sec_per_step=2.5e-3),
    ZooKey("rotation", "rotation", sec_per_step=1.2e-3),
    ZooKey("complex_diag", "complex_diag", sec_per_step=1.2e-3),
    ZooKey("posdiag1", "positive_diag", {"n_layers": 1}, sec_per_step=1.2e-3),
    ZooKey("posdiag2", "positive_diag", {"n_layers": 2}, sec_per_step=2e-3),
    ZooKey("lstm", "lstm", sec_per_step=1.5e-3),
    ZooKey("transformer", "transformer", {"n_layers": 2}, sec_per_step=40e-3, sec_per_run=15.0),
    ZooKey("full_additive", "full", {"additive": True}, dense=True, sec_per_step=3e-3),
)
ZOO_KEYS: dict[str, ZooKey] = {z.key: z for z in ZOO_REGISTRY}

#: The paper's hierarchy table rows (``full_additive`` is an ablation, not a row).
HIERARCHY_KEYS = tuple(z.key for z in ZOO_REGISTRY if z.key != "full_additive")
#: Zoo keys trained on the group tasks (the dense bilinear models the paper reports there).
GROUP_KEYS = ("full", "cp")
#: Zoo keys of the extended table (workbench.zoo.extended_cells), in build order: the bilinear
#: variants that solve some group or cyclic task at 500.
EXTENDED_KEYS = ("full", "rotation", "block2", "complex_diag", "cp")
#: Zoo keys that the learning-rate grid applies to (the 2x2-block variants).
LR_GRID_KEYS = ("block2", "rotation", "complex_diag")
#: Zoo keys that the weight-decay grid applies to (dense per-token matrices).
WD_GRID_KEYS = ("full", "cp", "full_additive")
#: Zoo keys whose spectra the figures show (the bilinear models without a stacked layer).
SPECTRA_KEYS = ("full", "cp", "block2", "rotation", "complex_diag", "block1")
#: Zoo keys of the length-generalisation figure.
LENGTH_KEYS = ("full", "cp", "block1", "block2", "rotation", "complex_diag", "posdiag1", "lstm",
               "transformer")
#: Zoo keys compared by the report's cyclic-task section.
CYCLIC_FOCUS_KEYS = ("full", "rotation", "block2")
#: Zoo keys of the report's FSM section.
FSM_FOCUS_KEYS = ("full", "cp", "block2", "lstm")
#: Zoo keys of the report's parity echo-state section.
PARITY_FOCUS_KEYS = ("block1", "full", "rotation")

#: The paper's accuracies at length 500 (chance-normalized), by zoo key, in task order
#: ``cyclic:2 3 5 10 25 50`` and ``fsm:2 5 10 25``. The Mamba row (1/2/4 layers) stands for
#: posdiag1/posdiag2.
PAPER_CYCLIC_ROWS: dict[str, tuple[float, ...]] = {
    "full": (1.00, 1.00, 1.00, 1.00, 1.00, 1.00),
    "block1": (1.00, 0.00, 0.00, 0.10, 0.00, 0.02),
    "block2": (1.00, 1.00, 1.00, 1.00, 1.00, 1.00),
    "rotation": (1.00, 0.00, 1.00, 0.66, 0.37, 0.00),
    "lstm": (1.00, 1.00, 0.98, 1.00, 0.00, 0.02),
    "posdiag1": (0.00, 0.01, 0.01, 0.00, 0.00, 0.00),
    "posdiag2": (0.00, 0.01, 0.01, 0.00, 0.00, 0.00),
    "transformer": (0.03, 0.01, 0.00, 0.00, 0.00, 0.00),
}
PAPER_FSM_ROWS: dict[str, tuple[float, ...]] = {
    "full": (1.00, 1.00, 1.00, 1.00),
    "cp": (1.00, 1.00, 1.00, 0.50),
    "block2": (1.00, 0.00, 0.00, 0.00),
    "lstm": (1.00, 1.00, 0.00, 0.00),
    "posdiag1": (0.00, 0.00, 0.00, 0.00),
    "posdiag2": (0.00, 0.00, 0.00, 0.00),
}
