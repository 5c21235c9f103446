"""Build a hooked bilinear RNN from plain tensors: a model trained elsewhere, brought in.

The tensors are named as the model names its own parameters (``model.state_dict()`` keys, see
``docs/your-own-models-and-automata.md``), so ``from_weights(v, model.state_dict())`` rebuilds ``model``. Sizes are
read from the shapes; every tensor is then checked against the shape the inferred (or
overridden) configuration needs, and a mismatch names the tensor, its shape and the expected
one. The danger this guards against: ``load_state_dict`` on a wrongly sized model either fails
with a message about one tensor in PyTorch's terms or, for a missing optional tensor, silently
keeps the random initialisation.
"""
from __future__ import annotations

import re

import torch

from workbench.variants import BILINEAR_VARIANTS

from .config import ModelConfig

#: ``full`` only: per-token matrices instead of ``W``; ``token_matrices[v]`` maps h_{t-1} to h_t.
TOKEN_MATRICES = "token_matrices"


def _shape(t) -> list[int]:
    return list(t.shape)


def _as_tensors(tensors) -> dict[str, torch.Tensor]:
    if not isinstance(tensors, dict):
        raise ValueError(f"tensors must be a dict {{name: tensor}}, got {type(tensors).__name__}")
    out = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise ValueError(f"tensor name {name!r} is not a string; accepted: the model's "
                             "parameter names, e.g. 'W', 'h0', 'W_U'")
        try:
            t = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"tensor {name!r} cannot be read as a tensor ({e}); accepted: a "
                             "torch.Tensor or numpy array") from None
        if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
            raise ValueError(f"tensor {name!r} has dtype {t.dtype}; accepted: a real floating "
                             "(or integer) dtype")
        t = t.detach().to("cpu", torch.float32)
        if not torch.isfinite(t).all():
            raise ValueError(f"tensor {name!r} has NaN/inf values")
        out[name] = t
    return out


def _need(tensors, name: str, variant: str, ndim: int, layout: str) -> torch.Tensor:
    if name not in tensors:
        raise ValueError(f"from_weights({variant!r}): missing tensor {name!r} {layout}; given: "
                         f"{sorted(tensors)}")
    t = tensors[name]
    if t.ndim != ndim:
        raise ValueError(f"tensor {name!r} has shape {_shape(t)}; expected {ndim} dims {layout}")
    return t


def infer_config(variant: str, tensors: dict[str, torch.Tensor], **overrides) -> ModelConfig:
    """The ``ModelConfig`` the tensors' shapes imply, with ``overrides`` applied on top.

    H and C come from ``W_U [H, C]``; D from the transition tensor; a ``W_E [V, D]`` means a
    learned embedding (``d_embed = D``, ``d_vocab = V``), its absence one-hot input (V = D);
    ``W_B`` means ``additive``; ``rank`` / ``block_size`` / ``n_layers`` from the cp factors,
    the blocks and the number of ``blocks.{l}`` layers. Overrides win; a clash with the
    shapes surfaces in :func:`load_weights`'s shape check, naming the tensor.
    """
    W_U = _need(tensors, "W_U", variant, 2, "[H, C]")
    H, C = W_U.shape
    fields = {"variant": variant, "d_hidden": int(H), "n_classes": int(C)}
    if variant == "full":
        if "W" in tensors and TOKEN_MATRICES in tensors:
            raise ValueError("from_weights('full'): give either 'W' [H, H, D] or "
                             "'token_matrices' [V, H, H], not both")
        if TOKEN_MATRICES in tensors:
            A = _need(tensors, TOKEN_MATRICES, variant, 3, "[V, H, H]")
            D = A.shape[0]
        else:
            D = _need(tensors, "W", variant, 3, "[H, H, D] (or 'token_matrices' [V, H, H])").shape[2]
    elif variant == "cp":
        gate = _need(tensors, "W_gate", variant, 2, "[D, R]")
        D, fields["rank"] = gate.shape[0], int(gate.shape[1])
    elif variant == "block":
        Wb = _need(tensors, "W_blocks", variant, 4, "[H/b, b, b, D]")
        D, fields["block_size"] = Wb.shape[3], int(Wb.shape[1])
    elif variant == "positive_diag":
        layers = {int(m.group(1)) for k in tensors if (m := re.fullmatch(r"blocks\.(\d+)\.W_diag", k))}
        D = _need(tensors, "blocks.0.W_diag", variant, 2, "[D, H]").shape[0]
        n = 0
        while n in layers:
            n += 1
        fields["n_layers"] = n
    else:
        if variant == "rotation":
            name, layout = "W_angle", "[D, H/2]"
        elif variant == "complex_diag":
            name, layout = "W_re", "[D, H/2]"
        else:
            name, layout = "W_diag", "[D, H]"
        D = _need(tensors, name, variant, 2, layout).shape[0]
    if "W_E" in tensors:
        W_E = _need(tensors, "W_E", variant, 2, "[V, D]")
        fields["d_vocab"], fields["d_embed"] = int(W_E.shape[0]), int(W_E.shape[1])
    else:
        fields["d_vocab"] = int(D)
    if variant != "positive_diag" and "W_B" in tensors:
        fields["additive"] = True
    accepted = set(ModelConfig.__dataclass_fields__) - {"variant"}
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise ValueError(f"cfg_overrides {unknown} are not ModelConfig fields (variant is the "
                         f"first argument); accepted: {sorted(accepted)}")
    fields.update(overrides)
    return ModelConfig(**fields)


def load_weights(model, tensors: dict[str, torch.Tensor]) -> None:
    """Copy ``tensors`` into ``model`` after checking names and shapes against its state dict.

    ``token_matrices`` (``full``) is applied through ``set_transition_matrices``.
    """
    wanted = model.state_dict()
    token_matrices = tensors.get(TOKEN_MATRICES)
    given = {k: v for k, v in tensors.items() if k != TOKEN_MATRICES}
    required = set(wanted) - ({"W"} if token_matrices is not None else set())
    cfg = model.cfg
    sizes = (f"variant={cfg.variant!r}, d_vocab={cfg.d_vocab}, d_hidden={cfg.d_hidden}, "
             f"n_classes={cfg.n_classes}, d_embed={cfg.d_embed}")
    missing = sorted(required - set(given))
    if missing:
        expected = ", ".join(f"{k} {_shape(wanted[k])}" for k in missing)
        raise ValueError(f"from_weights: missing tensors for {sizes}: {expected}")
    extra = sorted(set(given) - set(wanted))
    if extra:
        raise ValueError(f"from_weights: unexpected tensors {extra} for {sizes}; accepted "
                         f"names: {sorted(wanted)}"
                         + (f" and {TOKEN_MATRICES!r}" if cfg.variant == "full" else ""))
    for name, t in given.items():
        if _shape(t) != _shape(wanted[name]):
            raise ValueError(f"tensor {name!r} has shape {_shape(t)}; expected "
                             f"{_shape(wanted[name])} for {sizes}")
    if token_matrices is not None:
        V, H = cfg.d_vocab, cfg.d_hidden
        if _shape(token_matrices) != [V, H, H]:
            raise ValueError(f"tensor {TOKEN_MATRICES!r} has shape {_shape(token_matrices)}; "
                             f"expected [{V}, {H}, {H}] (d_vocab, d_hidden, d_hidden)")
    with torch.no_grad():
        for name, t in given.items():
            wanted[name].copy_(t)          # state_dict tensors share storage with the params
        if token_matrices is not None:
            model.set_transition_matrices(token_matrices)


def from_weights(model_class, variant: str, tensors: dict, **cfg_overrides):
    """``model_class`` (``HookedBilinearRNN``) built from ``tensors``; see
    :meth:`HookedBilinearRNN.from_weights`."""
    if variant not in BILINEAR_VARIANTS:
        raise ValueError(f"from_weights: variant={variant!r}; accepted: "
                         f"{', '.join(BILINEAR_VARIANTS)} (the bilinear family)")
    tensors = _as_tensors(tensors)
    cfg = infer_config(variant, tensors, **cfg_overrides)
    with torch.random.fork_rng(devices=[]):  # the init is overwritten; keep the caller's RNG
        model = model_class(cfg)
    load_weights(model, tensors)
    return model.eval()
