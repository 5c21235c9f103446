"""The ``transformer`` baseline: a TransformerLens model, so TL users find what they expect.

TransformerLens 4 removed ``HookedTransformer``; its successor is ``TransformerBridge`` over a
TL-native transformer (``TransformerBridge.boot_native``). :class:`HookedCausalTransformer` is
such a bridge (a subclass), built without downloads: TL's own hook names
(``blocks.{l}.attn.hook_pattern`` [B, heads, T, T], ``hook_q`` / ``hook_k`` / ``hook_v`` /
``hook_z``, ``hook_resid_pre`` / ``hook_resid_mid`` / ``hook_resid_post``, ``hook_attn_out``,
``hook_mlp_out``, ...), TL's ``run_with_cache`` / ``run_with_hooks`` / ``hooks()``, its
``ActivationCache`` and weight views (``W_Q``, ``W_pos``, ...), plus the workbench vocabulary:

* ``hook_embed`` [B, T, H]: the token embedding, before positions (TL's own name);
* ``blocks.{l}.hook_state`` [B, T, H], **once** per layer: the residual stream after layer l
  (positions are computed in parallel, so nothing fires per step; an edit at position t
  reaches positions >= t of later layers through causal attention);
* ``blocks.{l}.hook_out`` [B, T, H]: TL's block output, the same value, fired just before
  ``hook_state``;
* ``hook_logits`` [B, T, C].

Architecture (unchanged from the earlier ``nn.TransformerEncoderLayer`` baseline, so its
checkpoints convert exactly, see :func:`upgrade_legacy_state_dict`): pre-LayerNorm blocks,
``cfg.n_heads`` heads, ReLU MLP of width 4H, no dropout, fixed sinusoidal positions added to
the token embedding, final LayerNorm, readout with bias. The positions are a non-persistent
buffer, grown on demand, so the model runs at any length (the recurrent models do) and a
checkpoint stores no position table.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from transformer_lens.config import TransformerBridgeConfig
from transformer_lens.factories import architecture_adapter_factory
from transformer_lens.hook_points import HookPoint
from transformer_lens.model_bridge import TransformerBridge
from transformer_lens.model_bridge.sources.native.model import NativeModel
from transformer_lens.model_bridge.sources.transformers_driver import TransformersDriver

from .config import ModelConfig
from .hooked import RETURN_TYPES, HookedRecurrentModule, output_for_return_type

#: Context the position table and causal masks are first built for; longer inputs grow them.
INITIAL_N_CTX = 1024
#: ModelConfig fields the bridge's own config does not have (the shared ones, d_vocab and
#: n_layers, mean the same in both).
_WORKBENCH_FIELDS = ("variant", "d_hidden", "n_classes", "d_embed", "rank", "block_size",
                     "additive", "freeze_transition", "normalize", "init_noise")


def sinusoidal_positions(length: int, d: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Fixed sinusoidal position embedding [length, d] (defined for any length)."""
    pos = torch.arange(length, device=device, dtype=torch.float64)[:, None]
    i = torch.arange(0, d, 2, device=device, dtype=torch.float64)
    ang = pos / (10000.0 ** (i / d))
    pe = torch.zeros(length, d, dtype=torch.float64, device=device)
    pe[:, 0::2] = torch.sin(ang)
    pe[:, 1::2] = torch.cos(ang[:, : d // 2])
    return pe.to(dtype)


def bridge_config(cfg: ModelConfig, n_ctx: int = INITIAL_N_CTX) -> TransformerBridgeConfig:
    """The TL config of the baseline described by ``cfg``."""
    H, heads = cfg.d_hidden, cfg.n_heads
    return TransformerBridgeConfig(
        d_model=H, n_layers=cfg.n_layers, n_heads=heads, d_head=H // heads, d_mlp=4 * H,
        n_ctx=n_ctx, d_vocab=cfg.d_vocab, d_vocab_out=cfg.n_classes, act_fn="relu",
        normalization_type="LN", positional_embedding_type="standard", eps=1e-5,
        architecture="TransformerLensNative", model_name="workbench-transformer",
        dtype=torch.float32, device="cpu")


def _init_like_encoder_layer(native: NativeModel, H: int) -> None:
    """The earlier baseline's initialisation (``nn.TransformerEncoderLayer`` defaults: joint
    Xavier-uniform QKV, zero attention biases; embedding and readout N(0, 1/H)), so training
    runs keep the behaviour the zoo's numbers were measured with."""
    with torch.no_grad():
        native.tok_embed.weight.copy_(torch.randn_like(native.tok_embed.weight) / math.sqrt(H))
        for block in native.layers:
            a = block.attn
            qkv = torch.empty(3 * H, H)
            nn.init.xavier_uniform_(qkv)
            for lin, w in zip((a.q, a.k, a.v), qkv.split(H), strict=True):
                lin.weight.copy_(w)
                lin.bias.zero_()
            a.o.bias.zero_()
        native.head.weight.copy_(torch.randn(H, native.head.weight.shape[0]).T / math.sqrt(H))
        native.head.bias.zero_()


class HookedCausalTransformer(TransformerBridge):
    """Small causal transformer baseline as a TransformerLens ``TransformerBridge``.

    Parameters
    ----------
    cfg : ModelConfig with ``variant="transformer"`` (``d_hidden`` = d_model, ``n_layers``).

    Notes
    -----
    ``model.cfg`` is TL's ``TransformerBridgeConfig`` (what TL utilities read); it also
    answers the workbench's ``ModelConfig`` fields (``variant``, ``d_hidden``, ``n_classes``,
    ...), and ``model.model_config`` is the ``ModelConfig`` itself (what checkpoints store).
    ``model(tokens [B, T]) -> logits [B, T, C]``; ``return_type`` as for the recurrent models.
    """

    def __init__(self, cfg: ModelConfig):
        if not isinstance(cfg, ModelConfig):
            raise ValueError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
        cfg.validate()
        if cfg.variant != "transformer":
            raise ValueError(f"variant={cfg.variant!r}; accepted here: 'transformer'")
        tl_cfg = bridge_config(cfg)
        native = NativeModel(tl_cfg)
        H = cfg.d_hidden
        native.head = nn.Linear(H, cfg.n_classes, bias=True)
        # Fixed positions: a buffer, not a parameter (never trained, never saved).
        del native.pos.weight
        native.pos.register_buffer("weight", sinusoidal_positions(tl_cfg.n_ctx, H), persistent=False)
        _init_like_encoder_layer(native, H)
        native_blocks = list(native.layers)
        attention = [block.attn for block in native_blocks]
        adapter = architecture_adapter_factory.ArchitectureAdapterFactory.select_architecture_adapter(
            copy.deepcopy(tl_cfg))
        adapter.prepare_model(native)
        super().__init__(native, adapter, None, driver=TransformersDriver(native, adapter, None))
        # Plain attributes (not submodules): the pieces _ensure_context resizes.
        self.__dict__["_resizable"] = (tl_cfg, native.pos, attention)
        self.model_config = cfg
        for name in _WORKBENCH_FIELDS:
            setattr(self.cfg, name, getattr(cfg, name))
        for block, native_block in zip(self.blocks, native_blocks, strict=True):
            # Fired from the wrapped block itself, so it comes before TL's hook_out (an edit
            # at hook_out then leaves hook_state alone, as on the recurrent models).
            block.hook_state = HookPoint()
            native_block.register_forward_hook(_StateHook(block.hook_state))
        self.hook_logits = HookPoint()
        self._scan_existing_hooks(self, "")

    # ------------------------------------------------------------------ workbench API
    def validate_tokens(self, tokens) -> torch.Tensor:
        """Check ``tokens`` is an integer tensor [B, T] with entries in ``[0, d_vocab)``."""
        return HookedRecurrentModule.validate_tokens(self, tokens)

    def transition_matrices(self):
        raise ValueError("transition_matrices() is defined for the bilinear family only; "
                         "variant 'transformer' is a baseline without per-token transition "
                         "matrices")

    def set_transition_matrices(self, A):
        raise ValueError("set_transition_matrices() needs variant 'full', not 'transformer'")

    def upgrade_state_dict(self, tensors: dict) -> dict:
        """``tensors`` in this model's layout: the earlier baseline's are converted exactly
        (:func:`upgrade_legacy_state_dict`), others returned as they are."""
        if is_legacy_state_dict(tensors):
            return upgrade_legacy_state_dict(tensors, self.model_config.n_layers)
        return tensors

    def hook_shapes(self, batch: int, length: int) -> dict[str, tuple[int, ...]]:
        """Shapes of the workbench-vocabulary hooks for a [batch, length] input (TL's own
        hooks have TL's shapes, e.g. ``blocks.{l}.attn.hook_pattern`` [B, heads, T, T])."""
        B, T, H = batch, length, self.model_config.d_hidden
        shapes = {"hook_embed": (B, T, H)}
        for l in range(self.model_config.n_layers):
            shapes[f"blocks.{l}.hook_state"] = (B, T, H)
            shapes[f"blocks.{l}.hook_out"] = (B, T, H)
        shapes["hook_logits"] = (B, T, self.model_config.n_classes)
        return shapes

    def _ensure_context(self, length: int) -> None:
        """Grow the position table and causal masks (doubling) to hold ``length`` positions."""
        tl_cfg, pos, attention = self.__dict__["_resizable"]
        if length <= tl_cfg.n_ctx:
            return
        n = tl_cfg.n_ctx
        while n < length:
            n *= 2
        old = pos.weight
        pos.weight = sinusoidal_positions(n, old.shape[1], old.device, old.dtype)
        for attn in attention:
            attn.causal_mask = torch.triu(
                torch.ones(n, n, dtype=torch.bool, device=attn.causal_mask.device), diagonal=1)
        tl_cfg.n_ctx = n
        self.cfg.n_ctx = n

    def forward(self, input, return_type: str | None = "logits", normalize=None, labels=None,
                loss_per_token: bool = False, **kwargs):
        """Logits [B, T, C] for tokens [B, T] (``normalize`` is accepted for a uniform call and
        ignored). ``return_type`` ("logits", "loss", "both", None), ``labels`` [B, T] and
        ``loss_per_token`` as for the recurrent models (``output_for_return_type``): the loss is
        the cross-entropy against per-step task labels, not TL's language-model loss."""
        if return_type not in RETURN_TYPES:
            output_for_return_type(None, return_type)   # raises, naming the accepted values
        tokens = self.validate_tokens(input)
        self._ensure_context(tokens.shape[1])
        logits = self.hook_logits(super().forward(tokens, return_type="logits", **kwargs))
        return output_for_return_type(logits, return_type, labels, loss_per_token)


class _StateHook:
    """Forward hook of a native block: pass its output through ``blocks.{l}.hook_state``."""

    def __init__(self, hook_point: HookPoint):
        self.hook_point = hook_point

    def __call__(self, module, args, output):
        if isinstance(output, tuple):
            return (self.hook_point(output[0]),) + tuple(output[1:])
        return self.hook_point(output)


def is_legacy_state_dict(tensors: dict) -> bool:
    """True for the weights of the earlier ``nn.TransformerEncoderLayer`` baseline."""
    return "W_E" in tensors and "layers.0.self_attn.in_proj_weight" in tensors


def upgrade_legacy_state_dict(tensors: dict, n_layers: int) -> dict:
    """Map the earlier baseline's tensors onto this model's names (an exact reparametrisation:
    same architecture, PyTorch's joint QKV projection split into TL's ``q``/``k``/``v``)."""
    out = {"embed.weight": tensors["W_E"],
           "ln_final.weight": tensors["ln_final.weight"], "ln_final.bias": tensors["ln_final.bias"],
           "unembed.weight": tensors["W_U"].T.contiguous(), "unembed.bias": tensors["b_U"]}
    for l in range(n_layers):
        old, new = f"layers.{l}.", f"blocks.{l}."
        H = tensors[old + "self_attn.out_proj.weight"].shape[0]
        for part, w, b in zip("qkv", tensors[old + "self_attn.in_proj_weight"].split(H),
                              tensors[old + "self_attn.in_proj_bias"].split(H), strict=True):
            out[f"{new}attn.{part}.weight"] = w.contiguous()
            out[f"{new}attn.{part}.bias"] = b.contiguous()
        renames = {"self_attn.out_proj": "attn.o", "norm1": "ln1", "norm2": "ln2",
                   "linear1": "mlp.in", "linear2": "mlp.out"}
        for a, b in renames.items():
            for p in ("weight", "bias"):
                out[f"{new}{b}.{p}"] = tensors[f"{old}{a}.{p}"]
    return out


def legacy_reference_forward(tensors: dict, cfg: ModelConfig, tokens: torch.Tensor) -> torch.Tensor:
    """Logits [B, T, C] of the earlier baseline (PyTorch's ``nn.TransformerEncoderLayer``,
    pre-LN, causal mask) from its tensors: the reference :func:`upgrade_legacy_state_dict` is
    tested and benchmarked against."""
    H = cfg.d_hidden
    T = tokens.shape[1]
    x = nn.functional.embedding(tokens, tensors["W_E"])
    x = x + sinusoidal_positions(T, H, x.device, x.dtype)
    mask = nn.Transformer.generate_square_subsequent_mask(T, device=x.device, dtype=x.dtype)
    for l in range(cfg.n_layers):
        layer = nn.TransformerEncoderLayer(H, cfg.n_heads, 4 * H, dropout=0.0, batch_first=True,
                                           norm_first=True)
        prefix = f"layers.{l}."
        layer.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        layer.eval()
        x = layer(x, src_mask=mask, is_causal=True)
    x = nn.functional.layer_norm(x, (H,), tensors["ln_final.weight"], tensors["ln_final.bias"])
    return x @ tensors["W_U"] + tensors["b_U"]
