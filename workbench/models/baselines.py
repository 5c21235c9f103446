"""Recurrent baselines with the workbench hook vocabulary: LSTM, GRU, Elman (tanh) RNN.

The causal transformer baseline is a TransformerLens model: :mod:`workbench.models.transformer`.

Hooks (``l`` = layer):

* recurrent baselines: ``hook_embed`` [B,T,D] once; ``blocks.{l}.hook_h0`` [B,H] once (zero
  start state, editable); ``blocks.{l}.hook_state`` [B,H] **every step** with
  ``hook.ctx["t"]`` (the hidden state h_t; for the LSTM the cell state is not hooked), an edit
  becomes h_t and feeds step t+1; ``blocks.{l}.hook_out`` [B,T,H] once (feeds the next layer or
  the readout); ``hook_logits`` [B,T,C]. With no editing or backward hook on ``hook_state``
  the layer runs as one fused ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` call; with one, the same
  weights run step by step through ``torch.lstm_cell`` etc. (the fused kernel has no per-step
  gradient to hand to a backward hook).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint

from workbench.variants import BY_NAME, RNN_BASELINES

from .config import ModelConfig
from .hooked import HookedRecurrentModule

_RNN_CLASSES = {v: getattr(nn, BY_NAME[v].torch_module) for v in RNN_BASELINES}


class _BaselineBlock(nn.Module):
    def __init__(self, rnn: nn.Module | None, with_h0: bool):
        super().__init__()
        if rnn is not None:
            self.rnn = rnn
        if with_h0:
            self.hook_h0 = HookPoint()
        self.hook_state = HookPoint()
        self.hook_out = HookPoint()


class _NoTransitions:
    def transition_matrices(self):
        raise ValueError(f"transition_matrices() is defined for the bilinear family only; "
                         f"variant {self.cfg.variant!r} is a baseline without per-token "
                         "transition matrices")

    def set_transition_matrices(self, A):
        raise ValueError(f"set_transition_matrices() needs variant 'full', not "
                         f"{self.cfg.variant!r}")


class HookedBaselineRNN(_NoTransitions, HookedRecurrentModule):
    """``lstm``, ``gru`` or ``elman`` (tanh) baseline, ``n_layers`` stacked, linear readout."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.variant not in _RNN_CLASSES:
            raise ValueError(f"variant={cfg.variant!r}; accepted here: {', '.join(_RNN_CLASSES)}")
        cfg.validate()
        self.cfg = cfg
        V, H, D = cfg.d_vocab, cfg.d_hidden, cfg.d_input
        if cfg.d_embed is not None:
            self.W_E = nn.Parameter(torch.randn(V, D) / math.sqrt(D))
        self.hook_embed = HookPoint()
        cls = _RNN_CLASSES[cfg.variant]
        self.blocks = nn.ModuleList([
            _BaselineBlock(cls(D if l == 0 else H, H, batch_first=True), with_h0=True)
            for l in range(cfg.n_layers)])
        self.W_U = nn.Parameter(torch.randn(H, cfg.n_classes) / math.sqrt(H))
        self.b_U = nn.Parameter(torch.zeros(cfg.n_classes))
        self.hook_logits = HookPoint()
        self.setup()

    def embed(self, tokens):
        if self.cfg.d_embed is None:
            return F.one_hot(tokens, self.cfg.d_vocab).to(self.W_U.dtype)
        return F.embedding(tokens, self.W_E)

    def hook_shapes(self, batch, length):
        B, T, H = batch, length, self.cfg.d_hidden
        shapes = {"hook_embed": (B, T, self.cfg.d_input)}
        for l in range(self.cfg.n_layers):
            shapes[f"blocks.{l}.hook_h0"] = (B, H)
            shapes[f"blocks.{l}.hook_state"] = (B, T, H)
            shapes[f"blocks.{l}.hook_out"] = (B, T, H)
        shapes["hook_logits"] = (B, T, self.cfg.n_classes)
        return shapes

    def forward(self, tokens, normalize=None, return_type="logits", labels=None,
                loss_per_token=False):
        """Logits [B, T, C]. ``normalize`` is accepted for a uniform call and ignored;
        ``return_type``, ``labels``, ``loss_per_token`` as in TransformerLens (``model_output``)."""
        tokens = self.validate_tokens(tokens)
        B, T = tokens.shape
        x = self.hook_embed(self.embed_input("hook_embed", self.embed(tokens)))
        for l, blk in enumerate(self.blocks):
            h0 = blk.hook_h0(self.embed_input(
                f"blocks.{l}.hook_h0",
                torch.zeros(B, self.cfg.d_hidden, dtype=x.dtype, device=x.device)))
            name = f"blocks.{l}.hook_state"
            if self.editing_hooks(name) or self.has_bwd_hooks(name):
                out = self._stepwise(blk.rnn, x, h0, name)
            else:
                hx = h0.unsqueeze(0)
                if self.cfg.variant == "lstm":
                    hx = (hx, torch.zeros_like(hx))
                out, _ = blk.rnn(x, hx)
                self.fill_step_caches(name, out)
            x = blk.hook_out(out)
        return self.model_output(self.hook_logits(x @ self.W_U + self.b_U), return_type, labels,
                                 loss_per_token)

    def _stepwise(self, rnn, x, h0, name):
        w = (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
        v = self.cfg.variant
        h, c = h0, torch.zeros_like(h0)
        states = []
        for t, xt in enumerate(x.unbind(1)):
            if v == "lstm":
                h, c = torch.lstm_cell(xt, (h, c), *w)
            elif v == "gru":
                h = torch.gru_cell(xt, h, *w)
            else:
                h = torch.rnn_tanh_cell(xt, h, *w)
            h = self.fire_step(name, h, t + 1)
            states.append(h)
        self.finish_step_caches(name)
        return torch.stack(states, 1)
