"""`HookedBilinearRNN`: the bilinear recurrent family with per-step hooks.

``h_t = norm(A(x_t) h_{t-1} [+ x_t @ W_B + b_B])``, ``logits_t = h_t @ W_U``, where ``x_t`` is
the one-hot token (``d_embed=None``) or ``W_E[token]`` and every entry of ``A(x)`` is linear in
``x`` (parameterisations in ``docs/internals.md`` and ``docs/models.md``).

Two execution paths give the same numbers (parity test in ``tests/models``):

* the **fast path** (no editing hook on a per-step site, nothing upstream edited): the whole
  recurrence is one custom autograd node (:mod:`workbench.models.recurrence`); per-token
  matrices for the dense variants, elementwise kernels for the diagonal ones. Caching hooks on
  ``hook_state`` are filled from its output, so caching all states costs almost nothing;
* the **hooked loop**: a plain PyTorch loop that fires ``blocks.{l}.hook_state`` at every
  step with ``hook.ctx["t"] = t`` and feeds what the hook returns into step ``t + 1``.

Backward hooks fire on both paths. On the fast path the recurrence node's reverse loop fires
``hook_state``'s backward hooks per step; a backward hook on a site *upstream* of the recurrence
(``hook_embed``, the parameter hook, ``hook_transition``) needs the per-step value in the graph,
which the diagonal variants' kernel takes as input (still the fast path) while the dense
variants' per-token kernel cannot (the hooked loop runs; same numbers).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint

from workbench.limits import check_dense_hook
from workbench.variants import BILINEAR_VARIANTS, COMPLEX_VARIANTS, DIAGONAL_VARIANTS, PARAM_HOOKS

from .config import ModelConfig
from .from_weights import from_weights
from .hooked import HookedRecurrentModule
from .recurrence import DENSE_METHODS, dense_token_recurrence, diag_recurrence

# Recurrent parameters frozen by freeze_transition (W_E too: it changes every A(x)).
TRANSITION_PARAMS = ("W", "W_out", "W_gate", "W_in", "W_blocks", "W_angle", "W_re", "W_im",
                     "W_diag", "b_diag", "W_E")


class BilinearBlock(nn.Module):
    """Hook points of one recurrent layer (and, for ``positive_diag``, its parameters)."""

    def __init__(self, param_hook: str | None):
        super().__init__()
        self.hook_h0 = HookPoint()
        if param_hook is not None:
            setattr(self, param_hook, HookPoint())
        self.hook_transition = HookPoint()
        self.hook_state = HookPoint()
        self.hook_out = HookPoint()


class _Readout(torch.autograd.Function):
    """``x @ W`` for x [..., H] and W [H, C], with W's gradient computed as ``(g^T x)^T``.

    Autograd's own backward of ``x @ W`` computes ``x^T g``: an [H, N] x [N, C] product whose
    inner dimension is every (step, sample), which MKL runs ~8x slower than the same product as
    ``g^T x`` (107 ms against 14 ms at N = 131,072, H = 64, C = 8, one core): at
    ``benchmarks/bench_recurrence.py``'s sizes it cost more than the whole recurrence. The
    backward is written with differentiable ops, so double backward still works.
    """

    @staticmethod
    def forward(ctx, x, W):
        ctx.save_for_backward(x, W)
        return x @ W

    @staticmethod
    def backward(ctx, g):
        x, W = ctx.saved_tensors
        gx = g @ W.t() if ctx.needs_input_grad[0] else None
        gW = None
        if ctx.needs_input_grad[1]:
            gW = (g.reshape(-1, g.shape[-1]).t() @ x.reshape(-1, x.shape[-1])).t()
        return gx, gW


def _readout(x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() and W.requires_grad and x.is_contiguous():
        return _Readout.apply(x, W)
    return x @ W


def _time_major_matmul(x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``x @ W`` for x [B, T, H]; fast when x is a transposed view of time-major storage
    (the fast path's output): matmul on the non-contiguous view copies it slowly on CPU."""
    if x.ndim == 3 and not x.is_contiguous() and x.transpose(0, 1).is_contiguous():
        return _readout(x.transpose(0, 1), W).transpose(0, 1)
    return _readout(x, W)


def _token_major(W: torch.Tensor) -> torch.Tensor:
    """``W`` [H, H, D] with the same values, stored so that ``W.permute(2, 1, 0)`` is contiguous.

    The fast path needs ``A_d^T`` (= ``W[:, :, d]^T``) as one contiguous H x H matrix per input
    direction. Stored in the default layout, every forward would transpose the whole tensor
    (a strided copy: ~5-17 ms at H=256, V=25, several times the recurrence's arithmetic) and
    every backward transpose its gradient back. In this layout both are views: the gradient
    the recurrence returns already has the parameter's strides, so autograd stores it without
    a copy. Shapes, values, state_dict and checkpoints are unchanged (saving makes a
    contiguous copy; loading copies into these strides; ``.to()``/``.double()`` keep them).
    """
    return W.permute(2, 1, 0).contiguous().permute(2, 1, 0)


def _pairs_to_blocks(P: torch.Tensor) -> torch.Tensor:
    """Interleaved complex diagonal [..., H] -> 2x2 blocks [..., H/2, 2, 2] ``[[a,-b],[b,a]]``."""
    a, b = P.unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)


def _block_diag(blocks: torch.Tensor) -> torch.Tensor:
    """Blocks [..., n, b, b] -> dense block-diagonal [..., n*b, n*b]."""
    n, b = blocks.shape[-3], blocks.shape[-1]
    eye = torch.eye(n, dtype=blocks.dtype, device=blocks.device)
    dense = torch.einsum("...nij,nm->...nimj", blocks, eye)
    return dense.reshape(*blocks.shape[:-3], n * b, n * b)


class _InputGradTap(torch.autograd.Function):
    """Zeros ``[T, B, H]`` added to the dense fast path's pre-state, so that backward yields
    ``dL/dx_t[k] = dU_t . (M_k h_{t-1})``, the gradient wrt an input vector x_t of a transition
    linear in x (``A(x) = sum_k x_k M_k``, every bilinear variant), where ``dU_t`` is the
    recurrence's gradient wrt its pre-normalization state (what it returns for the additive
    term). The previous states are known only after the recurrence ran: the caller puts them in
    ``tap["prev"]`` ([T, B, H]) before any backward."""

    @staticmethod
    def forward(ctx, xT, M, tap):
        ctx.M, ctx.tap = M, tap
        T, B, _ = xT.shape
        return xT.new_zeros(T, B, M.shape[1])

    @staticmethod
    def backward(ctx, dU):
        M, prev = ctx.M, ctx.tap["prev"]
        T, B, H = prev.shape
        D = M.shape[0]
        Mcat = M.reshape(D * H, H)                           # rows k*H+i: M_k[i, :]
        rows_prev, rows_dU = prev.reshape(T * B, H), dU.reshape(T * B, H)
        dx = torch.empty(T * B, D, dtype=dU.dtype, device=dU.device)
        step = max(1, (1 << 22) // max(1, D * H))          # bound the [rows, D, H] temporary
        for r in range(0, T * B, step):
            MH = (rows_prev[r:r + step] @ Mcat.T).view(-1, D, H)     # (M_k h)[i]
            torch.bmm(MH, rows_dU[r:r + step].unsqueeze(2), out=dx[r:r + step].unsqueeze(2))
        return dx.view(T, B, D), None, None


class HookedBilinearRNN(HookedRecurrentModule):
    """Bilinear RNN of any variant in ``ModelConfig.variant`` (bilinear family).

    Parameters
    ----------
    cfg : ModelConfig
        A bilinear variant (``full cp block rotation complex_diag real_diag positive_diag``).

    Attributes
    ----------
    recurrence_method : str
        ``"auto"`` (default), ``"kernel"`` (compiled CPU loops), ``"grouped"`` or
        ``"alltokens"``: how the dense fast path advances (see :mod:`workbench.models.recurrence`).

    Notes
    -----
    Call: ``model(tokens [B, T], normalize=None) -> logits [B, T, C]``. Parameters live on the
    model itself (``model.W``, ``model.h0``, ``model.W_U``, ...) except for ``positive_diag``,
    whose per-layer parameters are ``model.blocks[l].W_diag`` etc. (state-dict
    ``blocks.{l}.W_diag``).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise ValueError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
        cfg.validate()
        if cfg.variant not in BILINEAR_VARIANTS:
            raise ValueError(f"variant={cfg.variant!r} is not bilinear; accepted: "
                             f"{', '.join(BILINEAR_VARIANTS)} (use build_model for baselines)")
        self.cfg = cfg
        self.recurrence_method = "auto"
        # Training-only perturbation (set by the training recipe, never saved): Gaussian noise of
        # relative size state_noise added to every pre-normalization state in train mode. It makes
        # any direction the recurrence amplifies visible within the short training lengths, so
        # training pushes such directions to contract instead of letting them take over at
        # length 500 (see workbench.training).
        self.state_noise = 0.0
        V, H, C, D = cfg.d_vocab, cfg.d_hidden, cfg.n_classes, cfg.d_input
        v = cfg.variant
        self.param_hook = PARAM_HOOKS[v]
        # u: the input direction whose coordinate is 1 for every token (x . u = 1), so that
        # "identity + noise" can be written linearly in x.
        if cfg.d_embed is None:
            u = torch.ones(D)
        else:
            u = torch.ones(D) / math.sqrt(D)
            self.W_E = nn.Parameter(u + 0.5 * torch.randn(V, D) / math.sqrt(D))
        self.hook_embed = HookPoint()
        s = cfg.init_noise
        frozen = cfg.freeze_transition
        if v == "full":
            eye = torch.eye(H)
            W = torch.randn(H, H, D) / math.sqrt(H) if frozen else \
                eye[:, :, None] * u + s / math.sqrt(H) * torch.randn(H, H, D)
            self.W = nn.Parameter(_token_major(W))
        elif v == "cp":
            R = cfg.rank
            q = torch.linalg.qr(torch.randn(max(H, R), min(H, R)))[0]
            Q = q.T if R >= H else q                                # [H, R], Q Q^T = I if R >= H
            if frozen:
                self.W_out = nn.Parameter(torch.randn(H, R) / math.sqrt(R))
                self.W_in = nn.Parameter(torch.randn(H, R) / math.sqrt(H))
                self.W_gate = nn.Parameter(torch.randn(D, R))
            else:
                self.W_out = nn.Parameter(Q + s / math.sqrt(H) * torch.randn(H, R))
                self.W_in = nn.Parameter(Q + s / math.sqrt(H) * torch.randn(H, R))
                self.W_gate = nn.Parameter(u[:, None] * torch.ones(R) + s / math.sqrt(H)
                                           * torch.randn(D, R))
        elif v == "block":
            b = cfg.block_size
            n = H // b
            if frozen:
                Wb = torch.randn(n, b, b, D) / math.sqrt(b)
                if b == 1:
                    Wb = torch.sign(Wb) * (0.5 + torch.rand_like(Wb))
            else:
                Wb = torch.eye(b)[None, :, :, None] * u + s / math.sqrt(b) * torch.randn(n, b, b, D)
            self.W_blocks = nn.Parameter(Wb)
        elif v == "rotation":
            ang = (torch.rand(D, H // 2) * 2 - 1) * math.pi if frozen else s * torch.randn(D, H // 2)
            self.W_angle = nn.Parameter(ang)
        elif v == "complex_diag":
            if frozen:
                r, phi = 0.5 + torch.rand(D, H // 2), (torch.rand(D, H // 2) * 2 - 1) * math.pi
                self.W_re = nn.Parameter(r * torch.cos(phi))
                self.W_im = nn.Parameter(r * torch.sin(phi))
            else:
                self.W_re = nn.Parameter(u[:, None] * torch.ones(H // 2)
                                         + s / math.sqrt(2) * torch.randn(D, H // 2))
                self.W_im = nn.Parameter(s / math.sqrt(2) * torch.randn(D, H // 2))
        elif v == "real_diag":
            if frozen:
                d = torch.where(torch.rand(D, H) < 0.5, -1.0, 1.0) * (0.5 + torch.rand(D, H))
            else:
                d = u[:, None] * torch.ones(H) + s * torch.randn(D, H)
            self.W_diag = nn.Parameter(d)
        if cfg.additive and v != "positive_diag":
            self.W_B = nn.Parameter(s / math.sqrt(H) * torch.randn(D, H))
            self.b_B = nn.Parameter(torch.zeros(H))
        if v != "positive_diag":
            self.h0 = nn.Parameter(F.normalize(torch.randn(H), dim=0))
        self.blocks = nn.ModuleList([BilinearBlock(self.param_hook) for _ in range(cfg.n_layers)])
        if v == "positive_diag":
            for l, blk in enumerate(self.blocks):
                Din = D if l == 0 else H
                # a = sigmoid(x @ W_diag + b_diag): decays start in (0.8, 0.999), Mamba-like.
                p = 0.8 + 0.199 * torch.rand(H)
                blk.W_diag = nn.Parameter(s / math.sqrt(Din) * torch.randn(Din, H))
                blk.b_diag = nn.Parameter(torch.log(p) - torch.log1p(-p))
                blk.W_B = nn.Parameter(torch.randn(Din, H) / math.sqrt(Din))
                blk.b_B = nn.Parameter(torch.zeros(H))
                blk.h0 = nn.Parameter(F.normalize(torch.randn(H), dim=0))
        self.W_U = nn.Parameter(torch.randn(H, C) / math.sqrt(H))
        self.hook_logits = HookPoint()
        if frozen:
            for name, p in self.named_parameters():
                if name.split(".")[-1] in TRANSITION_PARAMS:
                    p.requires_grad_(False)
        self.setup()

    @classmethod
    def from_weights(cls, variant: str, tensors: dict, **cfg_overrides) -> HookedBilinearRNN:
        """A hooked model of ``variant`` from plain tensors (a model trained elsewhere).

        Parameters
        ----------
        variant : str
            A bilinear variant (``full cp block rotation complex_diag real_diag positive_diag``).
        tensors : dict[str, Tensor or array]
            Under the model's own parameter names (``model.state_dict()`` keys: ``W``
            [H, H, D], ``h0`` [H], ``W_U`` [H, C], ``W_E`` [V, D] for a learned embedding,
            ``W_B`` [D, H] / ``b_B`` [H] for ``additive``, ...; ``docs/your-own-models-and-automata.md`` lists them
            per variant). For ``full``, ``token_matrices`` [V, H, H] (``h_t = A[v] h_{t-1}``)
            may replace ``W``. Cast to float32.
        **cfg_overrides
            ``ModelConfig`` fields to set on top of what the shapes imply (e.g.
            ``normalize=False``, ``freeze_transition=True``).

        Returns
        -------
        HookedBilinearRNN in eval mode; ``save_checkpoint`` makes it a checkpoint.

        Raises
        ------
        ValueError naming the tensor, its shape and the expected shape; missing or unexpected
        tensors by name.
        """
        return from_weights(cls, variant, tensors, **cfg_overrides)

    # ------------------------------------------------------------------ helpers
    @property
    def is_diagonal(self) -> bool:
        return self.cfg.variant in DIAGONAL_VARIANTS

    def _layer_param(self, l: int, name: str) -> torch.Tensor:
        return getattr(self.blocks[l], name) if self.cfg.variant == "positive_diag" else getattr(self, name)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """x for every step: one-hot [B, T, V] or ``W_E[tokens]`` [B, T, D]."""
        if self.cfg.d_embed is None:
            return F.one_hot(tokens, self.cfg.d_vocab).to(self.W_U.dtype)
        return F.embedding(tokens, self.W_E)

    def _lin(self, tokens, x, W):
        """``x @ W`` for [B, T, D] x, computed by table lookup when x is the token input."""
        if x is not None:
            return _time_major_matmul(x, W)
        if self.cfg.d_embed is None:
            return F.embedding(tokens, W)
        return F.embedding(tokens, self.W_E) @ W

    def _params(self, l: int, tokens, x) -> torch.Tensor:
        """The variant parameter hook's value [B, T, ...] (see PARAM_HOOKS)."""
        v, H = self.cfg.variant, self.cfg.d_hidden
        if v == "cp":
            return self._lin(tokens, x, self.W_gate)
        if v == "block":
            b = self.cfg.block_size
            Wb = self.W_blocks.permute(3, 0, 1, 2).reshape(-1, H * b)   # [D, n*b*b]
            return self._lin(tokens, x, Wb).unflatten(-1, (H // b, b, b))
        if v == "rotation":
            return self._lin(tokens, x, self.W_angle)
        if v == "complex_diag":
            W = torch.stack([self.W_re, self.W_im], -1).reshape(self.W_re.shape[0], H)
            return self._lin(tokens, x, W)
        if v == "real_diag":
            return self._lin(tokens, x, self.W_diag)
        if v == "positive_diag":
            blk = self.blocks[l]
            return torch.sigmoid(self._lin(tokens, x, blk.W_diag) + blk.b_diag)
        raise AssertionError(v)

    def _diag_kernel_input(self, params: torch.Tensor) -> torch.Tensor:
        """Params [B, T, ...] -> the elementwise kernel's P [B, T, H] (complex interleaved)."""
        if self.cfg.variant == "rotation":
            return torch.stack([torch.cos(params), torch.sin(params)], -1).flatten(-2)
        return params

    def _dense(self, l: int, tokens, x, params) -> torch.Tensor:
        """Dense transitions [B, T, H, H] from x / params (``A[..., i, j]`` maps h_j to h_i)."""
        B, T = (tokens if tokens is not None else x).shape[:2]
        check_dense_hook(f"blocks.{l}.hook_transition", B, T, self.cfg.d_hidden)
        v = self.cfg.variant
        if v == "full":
            if x is None:
                x = self.embed(tokens)
            return torch.einsum("ijk,btk->btij", self.W, x)
        if params is None:
            params = self._params(l, tokens, x)
        if v == "cp":
            return torch.einsum("ir,btr,jr->btij", self.W_out, params, self.W_in)
        if v == "block":
            return _block_diag(params)
        P = self._diag_kernel_input(params)
        if v in COMPLEX_VARIANTS:
            return _block_diag(_pairs_to_blocks(P))
        return torch.diag_embed(P)

    def _token_transitions_T(self, vocab: torch.Tensor) -> torch.Tensor:
        """``A_v^T`` for every token, [V, H, H], differentiable (the fast path's table).

        ``full`` with one-hot input: ``A_v = W[:, :, v]``, so the table is a permuted view of
        ``W``, contiguous in the layout ``W`` is stored in (:func:`_token_major`): no copy
        forward or backward. (The einsum against the identity it replaces was a skinny
        [H^2, V] x [V, V] GEMM forward and two backward, plus the transposes.)
        """
        if self.cfg.variant == "full" and self.cfg.d_embed is None:
            return self.W.permute(2, 1, 0)
        return self._dense(0, vocab, None, None)[0].transpose(1, 2)

    def transition_matrices(self) -> torch.Tensor:
        """Dense ``A_v`` for every token v, [V, H, H] (``positive_diag``: layer 0's diagonal).

        ``h_t = A_v h_{t-1}`` for column states; computed without gradient.
        """
        tokens = torch.arange(self.cfg.d_vocab, device=self.W_U.device)[None]
        with torch.no_grad():
            return self._dense(0, tokens, None, None)[0].clone()

    def set_transition_matrices(self, A) -> None:
        """Set ``W`` so that ``A(x_v) = A[v]`` for every token (variant ``full`` only).

        Parameters
        ----------
        A : Tensor or array [V, H, H]

        With a learned embedding the tensor is solved by least squares through ``W_E`` and a
        ``ValueError`` reports the residual when the embedding cannot express ``A``
        (rank of ``W_E`` below V).
        """
        if self.cfg.variant != "full":
            raise ValueError(f"set_transition_matrices needs variant 'full', not "
                             f"{self.cfg.variant!r}; set the variant's parameters instead")
        A = torch.as_tensor(A, dtype=self.W.dtype, device=self.W.device)
        V, H = self.cfg.d_vocab, self.cfg.d_hidden
        if A.shape != (V, H, H):
            raise ValueError(f"A has shape {tuple(A.shape)}; accepted: [{V}, {H}, {H}] "
                             "(d_vocab, d_hidden, d_hidden)")
        with torch.no_grad():
            if self.cfg.d_embed is None:
                self.W.copy_(A.permute(1, 2, 0))
                return
            E = self.W_E                                              # [V, D]
            Af = A.reshape(V, H * H)                                   # E @ Wf = Af
            Wf = torch.linalg.lstsq(E, Af).solution                    # [D, H*H]
            residual = float((E @ Wf - Af).abs().max())
            if residual > 1e-4 * max(1.0, float(Af.abs().max())):
                raise ValueError(f"W_E (rank {int(torch.linalg.matrix_rank(E))}) cannot express "
                                 f"these matrices: least-squares residual {residual:.3g}; "
                                 "accepted: a one-hot model or d_embed >= d_vocab")
            self.W.copy_(Wf.T.reshape(H, H, -1))

    def hook_shapes(self, batch: int, length: int) -> dict[str, tuple[int, ...]]:
        B, T, H, cfg = batch, length, self.cfg.d_hidden, self.cfg
        shapes = {"hook_embed": (B, T, cfg.d_input)}
        pshape = {"hook_gates": (B, T, cfg.rank or 0), "hook_angles": (B, T, H // 2),
                  "hook_diag": (B, T, H),
                  "hook_blocks": (B, T, H // (cfg.block_size or 1), cfg.block_size or 1,
                                  cfg.block_size or 1)}
        for l in range(cfg.n_layers):
            p = f"blocks.{l}."
            shapes[p + "hook_h0"] = (B, H)
            if self.param_hook:
                shapes[p + self.param_hook] = pshape[self.param_hook]
            shapes[p + "hook_transition"] = (B, T, H, H)
            shapes[p + "hook_state"] = (B, T, H)
            shapes[p + "hook_out"] = (B, T, H)
        shapes["hook_logits"] = (B, T, cfg.n_classes)
        return shapes

    # ------------------------------------------------------------------ forward
    def forward(self, tokens: torch.Tensor, normalize: bool | None = None,
                return_type: str | None = "logits", labels: torch.Tensor | None = None,
                loss_per_token: bool = False):
        """Logits [B, T, C] for tokens [B, T] (``normalize``: see ModelConfig).

        ``return_type`` ("logits", "loss", "both", None), ``labels`` [B, T] and
        ``loss_per_token`` as in TransformerLens (see ``model_output``).
        """
        tokens = self.validate_tokens(tokens)
        if self.recurrence_method not in DENSE_METHODS:
            raise ValueError(f"recurrence_method={self.recurrence_method!r}; accepted: "
                             f"{', '.join(DENSE_METHODS)}")
        if return_type not in self.RETURN_TYPES:
            self.model_output(None, return_type)   # raises the accepted values
        norm = self.resolve_normalize(normalize)
        x, x_is_tokens = None, False
        if self.has_hooks("hook_embed"):
            x = self.hook_embed(self.embed_input("hook_embed", self.embed(tokens)))
            if not self.editing_hooks("hook_embed"):
                if self.has_bwd_hooks("hook_embed"):
                    x_is_tokens = True   # unedited, but its gradient is wanted
                else:
                    x = None   # only cached: the token lookups give the same values, faster
        for l in range(self.cfg.n_layers):
            out = self._run_layer(l, tokens, x, norm, x_is_tokens and l == 0)
            x = self.blocks[l].hook_out(out)
        logits = self.hook_logits(_time_major_matmul(x, self.W_U))
        return self.model_output(logits, return_type, labels, loss_per_token)

    def _run_layer(self, l: int, tokens, x, norm: bool, x_is_tokens: bool = False) -> torch.Tensor:
        """One recurrent layer. ``x``: None (token input, looked up), or the input [B, T, D];
        ``x_is_tokens``: x holds exactly the token input (no forward edit) and is passed only
        for its gradient, so the dense fast path may still run (see :class:`_InputGradTap`)."""
        cfg, blk = self.cfg, self.blocks[l]
        B, T = tokens.shape
        H = cfg.d_hidden
        pre = f"blocks.{l}."
        h0 = self._layer_param(l, "h0").unsqueeze(0).repeat(B, 1)
        h0 = blk.hook_h0(h0)
        dense_variant = not self.is_diagonal
        # "used": the value must stay in the graph, because a hook edited it (forward) or
        # wants its gradient (backward).
        upstream_edited = x is not None
        params, params_edited = None, False
        if self.param_hook is not None:
            pname = pre + self.param_hook
            if upstream_edited or self.has_hooks(pname):
                params = getattr(blk, self.param_hook)(self._params(l, tokens, x))
                params_edited = self.editing_hooks(pname) or self.has_bwd_hooks(pname)
        A_dense, A_edited = None, False
        if self.has_hooks(pre + "hook_transition"):
            A_dense = blk.hook_transition(self._dense(l, tokens, x, params))
            A_edited = (self.editing_hooks(pre + "hook_transition")
                        or self.has_bwd_hooks(pre + "hook_transition"))
        additive = cfg.additive or cfg.variant == "positive_diag"
        state_name = pre + "hook_state"
        slow = (self.editing_hooks(state_name) or A_edited
                or (dense_variant and ((upstream_edited and not x_is_tokens) or params_edited)))
        noise = self._state_noise(B, T, H, h0)                   # [T, B, H] or None
        if slow:
            C = None
            if additive:
                C = self._lin(tokens, x, self._layer_param(l, "W_B")) + self._layer_param(l, "b_B")
            if noise is not None:
                C = noise.transpose(0, 1) if C is None else C + noise.transpose(0, 1)
            states = self._hooked_loop(l, tokens, x, params, A_dense if A_edited else None,
                                       C, h0, norm)
            self.finish_step_caches(state_name)
            return states
        # Fast path. With token input, everything per step is a lookup in a small [V, ...]
        # table built once (cos/sin, sigmoid, W_B rows), gathered straight into time-major.
        tok_T = tokens.T.contiguous()
        vocab = torch.arange(cfg.d_vocab, device=tokens.device)[None]
        token_input = not upstream_edited and not params_edited
        Ct = None
        if additive:
            W_B, b_B = self._layer_param(l, "W_B"), self._layer_param(l, "b_B")
            if token_input:
                Ct = F.embedding(tok_T, self._lin(vocab, None, W_B)[0] + b_B)
            else:
                Ct = (self._lin(tokens, x, W_B) + b_B).transpose(0, 1).contiguous()
        if noise is not None:
            Ct = noise if Ct is None else Ct + noise
        grad_hook = self.step_grad_hook(state_name)
        if dense_variant:
            tap = None
            if upstream_edited and x.requires_grad:
                # x is only wanted for its gradient: a zero-valued term whose backward gives
                # dL/dx_t, while the token tables carry the values. The tables are built from a
                # detached embedding, so W_E's gradient arrives once, through x.
                AT = self._dense(0, None, self.embed(vocab).detach(), None)[0].transpose(1, 2)
                D = x.shape[-1]
                basis = torch.eye(D, dtype=x.dtype, device=x.device)[None]
                M = self._dense(0, None, basis, None)[0].detach()          # [D, H, H]
                tap = {}
                zero = _InputGradTap.apply(x.transpose(0, 1), M, tap)     # [T, B, H] zeros
                Ct = zero if Ct is None else Ct + zero
            else:
                AT = self._token_transitions_T(vocab)
            states = dense_token_recurrence(AT, tok_T, h0, Ct, norm, self.recurrence_method,
                                            grad_hook)
            if tap is not None:
                tap["prev"] = torch.cat([h0.detach().unsqueeze(0), states.detach()[:-1]], 0)
        else:
            if token_input:
                table = self._diag_kernel_input(self._params(l, vocab, None))[0]   # [V, H]
                P = F.embedding(tok_T, table)
            else:
                if params is None:
                    params = self._params(l, tokens, x)
                P = self._diag_kernel_input(params).transpose(0, 1).contiguous()
            states = diag_recurrence(P, h0, Ct, norm,
                                     is_complex=cfg.variant in COMPLEX_VARIANTS,
                                     grad_hook=grad_hook)
        states = states.transpose(0, 1)
        self.fill_step_caches(state_name, states)
        return states

    def _state_noise(self, B: int, T: int, H: int, like: torch.Tensor):
        """Time-major noise ``[T, B, H]`` with expected norm ``state_noise`` (train mode only)."""
        if not (self.training and self.state_noise > 0):
            return None
        return torch.randn(T, B, H, dtype=like.dtype, device=like.device) * (
            self.state_noise / math.sqrt(H))

    def _hooked_loop(self, l, tokens, x, params, A_dense, C, h0, norm) -> torch.Tensor:
        """Reference loop: fires ``hook_state`` every step; what it returns becomes h_t.

        Per-step inputs come from ``unbind`` (one autograd node), never from slicing a
        [B, T, ...] tensor inside the loop (that makes backward quadratic in T).
        """
        cfg = self.cfg
        v, H = cfg.variant, cfg.d_hidden
        B, T = tokens.shape
        if A_dense is not None:
            A_steps = A_dense.unbind(1)
            step = lambda h, t: torch.bmm(h.unsqueeze(1), A_steps[t].transpose(1, 2)).squeeze(1)
        elif v == "full":
            xs = (x if x is not None else self.embed(tokens)).unbind(1)
            D = self.W.shape[2]
            Wr = self.W.permute(1, 0, 2).reshape(H, H * D)          # Wr[j, i*D+k] = W[i, j, k]
            step = lambda h, t: ((h @ Wr).view(B, H, D) * xs[t].unsqueeze(1)).sum(-1)
        else:
            if params is None:
                params = self._params(l, tokens, x)
            if v == "cp":
                gs = params.unbind(1)
                step = lambda h, t: ((h @ self.W_in) * gs[t]) @ self.W_out.T
            elif v == "block":
                bs = params.unbind(1)
                b = cfg.block_size
                step = lambda h, t: torch.einsum("bnij,bnj->bni", bs[t],
                                                 h.view(B, H // b, b)).reshape(B, H)
            elif v in COMPLEX_VARIANTS:
                Ps = self._diag_kernel_input(params).unbind(1)

                def step(h, t):
                    a, b_ = Ps[t].view(B, H // 2, 2).unbind(-1)
                    hr, hi = h.view(B, H // 2, 2).unbind(-1)
                    return torch.stack([a * hr - b_ * hi, b_ * hr + a * hi], -1).view(B, H)
            else:
                Ps = params.unbind(1)
                step = lambda h, t: Ps[t] * h
        C_steps = None if C is None else C.unbind(1)
        name = f"blocks.{l}.hook_state"
        fire = self.has_hooks(name)
        h, states = h0, []
        for t in range(T):
            h = step(h, t)
            if C_steps is not None:
                h = h + C_steps[t]
            if norm:
                h = h / torch.linalg.vector_norm(h, dim=1, keepdim=True)
            if fire:
                h = self.fire_step(name, h, t + 1)
            states.append(h)
        return torch.stack(states, dim=1)
