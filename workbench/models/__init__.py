"""The hooked model family: bilinear RNN variants and baselines (LSTM, GRU, Elman, transformer).

``build_model(cfg)`` returns the module for any ``ModelConfig``; every model maps tokens
``[B, T]`` to logits ``[B, T, C]`` and exposes the same hook vocabulary (``docs/hooks.md``).
This is the only workbench package that imports TransformerLens.
"""
from __future__ import annotations

from .baselines import HookedBaselineRNN
from .bilinear import HookedBilinearRNN
from .config import BASELINE_VARIANTS, BILINEAR_VARIANTS, VARIANTS, ModelConfig
from .hooked import DEFAULT_MAX_CACHE_BYTES, StepCache, state_patch_setter
from .transformer import HookedCausalTransformer
from .recurrence import choose_dense_method, dense_token_recurrence, diag_recurrence


def build_model(cfg: ModelConfig):
    """Build the model of ``cfg.variant`` (bilinear family or baseline), freshly initialised.

    Parameters
    ----------
    cfg : ModelConfig

    Returns
    -------
    torch.nn.Module
        ``HookedBilinearRNN``, ``HookedBaselineRNN`` (lstm, gru, elman) or
        ``HookedCausalTransformer`` (a TransformerLens ``TransformerBridge``).
    """
    if not isinstance(cfg, ModelConfig):
        raise ValueError(f"build_model expects a ModelConfig, got {type(cfg).__name__}; "
                         "accepted: ModelConfig(...) or ModelConfig.from_dict(d)")
    cfg.validate()
    if cfg.variant in BILINEAR_VARIANTS:
        return HookedBilinearRNN(cfg)
    if cfg.variant == "transformer":
        return HookedCausalTransformer(cfg)
    return HookedBaselineRNN(cfg)


__all__ = [
    "ModelConfig", "build_model", "HookedBilinearRNN", "HookedBaselineRNN",
    "HookedCausalTransformer", "StepCache", "state_patch_setter", "DEFAULT_MAX_CACHE_BYTES",
    "VARIANTS", "BILINEAR_VARIANTS", "BASELINE_VARIANTS", "dense_token_recurrence",
    "diag_recurrence", "choose_dense_method",
]
