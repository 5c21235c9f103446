"""Hook machinery for recurrent models: per-step hook points, step-indexed caches, memory guard.

TransformerLens (TL) keeps only the *last* value when a hook point fires more than once, and
its caching slices positions assuming ``[batch, pos, ...]``. A recurrent model fires
``blocks.{l}.hook_state`` once per step, so this module provides:

* :class:`HookedRecurrentModule`, a ``HookedRootModule`` whose ``run_with_cache`` returns every
  step (``[B, T, ...]``), accepts ``steps=`` and refuses an oversized cache *before* running;
* :class:`StepCacheRecorder`, the caching hook: it knows the step from ``hook.ctx["t"]`` and
  can also be filled in one go from the fast path (so caching all states costs no per-step
  Python hooks);
* :func:`state_patch_setter`, a patch setter for ``generic_activation_patch`` on per-step sites;
* backward hooks on every hook point, on both execution paths: a per-step site's backward hooks
  fire once per step with ``hook.ctx["t"]`` set (in the hooked loop through small autograd
  nodes around the hook point; on the fast path the recurrence's own reverse loop calls them,
  see :meth:`HookedRecurrentModule.step_grad_hook`), and ``run_with_cache(incl_bwd=True)``
  stores ``cache[name + "_grad"]`` in the same ``[B, n_steps, ...]`` layout as the activations;
* TransformerLens conventions: ``return_type`` (:meth:`HookedRecurrentModule.model_output`) and
  ``from_pretrained(zoo_name)``.

The danger this guards against: hooks are global state on the module (see TL's
``HookedRootModule`` docstring). ``run_with_cache`` / ``run_with_hooks`` / ``hooks()`` remove
what they add; hooks added with ``add_hook`` stay until ``reset_hooks()``.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

import torch
from transformer_lens import HookedRootModule
from transformer_lens.ActivationCache import ActivationCache
from transformer_lens.hook_points import HookPoint

DEFAULT_MAX_CACHE_BYTES = 1 << 30  # 1 GiB


def _format_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


class StepCache(ActivationCache):
    """An ``ActivationCache`` whose tensors keep a step axis at dim 1.

    ``cache[name]`` is ``[B, n_steps, ...]`` for every hook with a step axis (all but
    ``hook_h0``); ``cache.steps`` lists the 1-based steps kept (``None`` = all, 1..T), so
    ``cache["blocks.0.hook_state"][:, i]`` is the state after step ``cache.steps[i]``.
    TL shorthand works: ``cache["state", 0]``.
    """

    def __init__(self, cache_dict, model, steps: list[int] | None):
        super().__init__(cache_dict, model)
        self.steps = steps

    def apply_slice_to_batch_dim(self, batch_slice) -> "StepCache":
        """TL's batch slicing, keeping ``steps`` (TL's version returns a plain ActivationCache)."""
        sliced = super().apply_slice_to_batch_dim(batch_slice)
        out = StepCache(sliced.cache_dict, self.model, self.steps)
        out.has_batch_dim = sliced.has_batch_dim
        return out

    def step_index(self, step: int) -> int:
        """Index along dim 1 of the cached tensors of the 1-based ``step``."""
        if self.steps is None:
            return step - 1
        if step not in self.steps:
            raise ValueError(f"step={step} was not cached; cached steps: {self.steps}")
        return self.steps.index(step)


class StepCacheRecorder:
    """Hook that caches a hook point's value (forward) or its gradient (backward), per step or whole.

    Fired per step (``"t"`` in ``hook.ctx``), it stores the ``[B, ...]`` tensor of the wanted
    steps and stacks them into ``[B, n_steps, ...]``; fired once with ``[B, T, ...]`` it keeps the
    wanted positions. A backward recorder stores under ``name + "_grad"`` (TransformerLens's key)
    and stacks as soon as its earliest wanted step has fired (backward visits steps T..1, so that
    one comes last); a forward recorder stacks at :meth:`finish`, which the model calls after its
    hooked loop (so caches added with ``add_caching_hooks`` are complete too). Models call
    :meth:`store_full` to fill a per-step site from the fast path. The attribute
    ``is_step_cache`` tells models that this hook only reads.
    """

    is_step_cache = True

    def __init__(self, store: dict, steps: list[int] | None, device=None, has_step_axis=True,
                 is_backward: bool = False):
        self.store = store
        self.steps = steps
        self.device = device
        self.has_step_axis = has_step_axis
        self.is_backward = is_backward
        self._parts: dict[int, torch.Tensor] = {}
        self._name: str | None = None

    def _key(self, name: str) -> str:
        return name + "_grad" if self.is_backward else name

    def _keep(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        if self.device is not None:
            x = x.to(self.device)
        return x

    def __call__(self, tensor: torch.Tensor, hook: HookPoint):
        self._name = hook.name
        t = hook.ctx.get("t")
        if t is not None:
            if self.steps is None or t in self.steps:
                self._parts[t] = self._keep(tensor).clone()
            if self.is_backward and t == (1 if self.steps is None else self.steps[0]):
                self.finish()
            return None
        self.store_full(tensor, hook.name)
        return None

    def store_full(self, tensor: torch.Tensor, name: str) -> None:
        """Cache a whole ``[B, T, ...]`` tensor (or ``[B, ...]`` without a step axis)."""
        self._name = name
        x = self._keep(tensor)
        if self.has_step_axis and self.steps is not None:
            x = x[:, [s - 1 for s in self.steps]]
        self.store[self._key(name)] = x

    def finish(self) -> None:
        """Stack the per-step parts collected so far into ``[B, n_steps, ...]``."""
        if self._parts and self._name is not None:
            order = sorted(self._parts)
            self.store[self._key(self._name)] = torch.stack([self._parts[t] for t in order], dim=1)
            self._parts = {}


class _GradCollector:
    """``step_grad_hook`` when every backward hook of the site is a cache recorder: the per-step
    gradients go into one ``[T, B, ...]`` buffer (one copy per step, no hook calls) and reach
    the recorders in one piece after step 1, the last one backward visits."""

    def __init__(self, hp: HookPoint, recorders: list):
        self.hp, self.recorders, self.buf = hp, recorders, None

    def __call__(self, g: torch.Tensor, t: int) -> torch.Tensor:
        if self.buf is None:
            self.buf = g.new_empty((t,) + tuple(g.shape))   # first call: t = T
        self.buf[t - 1].copy_(g)
        if t == 1:
            full = self.buf.transpose(0, 1)
            for rec in self.recorders:
                rec.store_full(full, self.hp.name)
            self.buf = None
        return g


class _SetStepOnBackward(torch.autograd.Function):
    """Identity; in backward it sets ``hook_point.ctx["t"]`` before the hook point's own
    backward hooks run (they sit just upstream of this node), so per-step backward hooks of the
    hooked loop read their step like forward hooks do."""

    @staticmethod
    def forward(ctx, x, hook_point, t):
        ctx.hook_point, ctx.t = hook_point, t
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        ctx.hook_point.ctx["t"] = ctx.t
        return g, None, None


class _ClearStepOnBackward(torch.autograd.Function):
    """Identity; in backward it removes ``ctx["t"]`` once the hook point's backward hooks ran."""

    @staticmethod
    def forward(ctx, x, hook_point):
        ctx.hook_point = hook_point
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        ctx.hook_point.ctx.pop("t", None)
        return g, None


def _traced_externally(hp: HookPoint) -> bool:
    """True if a tool that wraps the hook point's ``forward`` (nnsight) may read or edit it now.

    nnsight does not add hooks: it replaces each module's ``forward`` on the instance with a
    controller that hands the value to the trace. A fast path that never calls the hook point
    would hide it from the trace, so a wrapped hook point counts as hooked: while nnsight's
    controller reports an active trace (its ``state.active()``), or always for a wrapper this
    function does not know.
    """
    fwd = hp.__dict__.get("forward")
    if fwd is None:
        return False
    active = getattr(getattr(fwd, "state", None), "active", None)
    if not callable(active):
        return True
    try:
        return active()[0] is not None
    except Exception:   # an unknown controller: be safe, take the hooked path
        return True


def is_cache_hook(fn: Callable) -> bool:
    return bool(getattr(fn, "is_step_cache", False))


def state_patch_setter(model: HookedRootModule, name: str) -> Callable:
    """A ``patch_setter`` for TL's ``generic_activation_patch`` on a per-step site.

    TL's ``layer_pos_patch_setter`` writes ``act[:, pos]`` and assumes ``[B, T, ...]``; a
    per-step site (``blocks.{l}.hook_state``) receives ``[B, H]`` once per step. This setter
    replaces the state with the clean one when the current step is ``pos + 1`` (0-based
    position ``pos`` is step ``pos + 1``) and otherwise leaves it alone.

    Parameters
    ----------
    model : the hooked model (the step is read from its hook point's ``ctx``).
    name : str, the hook name, e.g. ``"blocks.0.hook_state"``.

    Returns
    -------
    Callable ``(corrupted [B, H], index [layer, pos], clean [B, T, H]) -> [B, H]``.
    """
    if name not in model.hook_dict:
        raise ValueError(f"hook name {name!r} not in the model; accepted: {sorted(model.hook_dict)}")
    hp = model.hook_dict[name]

    def setter(corrupted, index, clean):
        pos = int(index[-1])
        t = hp.ctx.get("t")
        if t is None:  # fired once with [B, T, ...]
            corrupted[:, pos] = clean[:, pos]
            return corrupted
        if t == pos + 1:
            return clean[:, pos].clone()
        return corrupted

    return setter


def parse_steps(steps: Any, T: int) -> list[int] | None:
    """Normalize ``steps=`` to a sorted list of distinct 1-based steps, or None (all).

    Accepted: None, an int, or an iterable of ints (``range`` included), each in ``1..T`` or
    negative counting from the end (``-1`` = T).
    """
    if steps is None:
        return None
    if isinstance(steps, bool) or not (isinstance(steps, int) or isinstance(steps, Iterable)):
        raise ValueError(f"steps={steps!r}; accepted: None, an int or an iterable of ints in "
                         f"1..{T} (negative counts from the end)")
    items = [steps] if isinstance(steps, int) else list(steps)
    out = []
    for s in items:
        if isinstance(s, torch.Tensor) and s.ndim == 0:
            s = int(s)
        if isinstance(s, bool) or not isinstance(s, int):
            raise ValueError(f"steps entry {s!r} is not an int; accepted: ints in 1..{T}")
        if s < 0:
            s = T + 1 + s
        if not 1 <= s <= T:
            raise ValueError(f"step {s} is out of range; accepted: 1..{T} for a length-{T} "
                             "input (steps are 1-based: step t consumes token t), or -T..-1")
        out.append(s)
    if not out:
        raise ValueError("steps is empty; accepted: None (all steps) or at least one step")
    return sorted(set(out))


def _names_filter_fn(names_filter) -> Callable[[str], bool]:
    if names_filter is None:
        return lambda name: True
    if isinstance(names_filter, str):
        return lambda name: name == names_filter
    if callable(names_filter):
        return names_filter
    if isinstance(names_filter, Iterable):
        allowed = set(names_filter)
        return lambda name: name in allowed
    raise ValueError(f"names_filter={names_filter!r}; accepted: None, a hook name, a list of "
                     "hook names or a function name -> bool")


RETURN_TYPES = ("logits", "loss", "both", None)


def output_for_return_type(logits, return_type="logits", labels=None,
                           loss_per_token: bool = False):
    """What a model's ``forward`` returns for ``return_type``, as in TransformerLens.

    Parameters
    ----------
    logits : Tensor [B, T, C]
    return_type : "logits" | "loss" | "both" | None
        ``"loss"``: cross-entropy against ``labels``; ``"both"``: ``(logits, loss)``;
        None: nothing (run for the hooks only).
    labels : LongTensor [B, T] or None
        Per-step task labels (``task.eval_set(...).labels``); entries ``-100`` are ignored.
        Needed for a loss: a state tracker has no next-token target to fall back on.
    loss_per_token : bool
        Return the loss per (sequence, step), ``[B, T]`` (0 at ignored entries), instead of
        the mean.
    """
    if return_type not in RETURN_TYPES:
        raise ValueError(f"return_type={return_type!r}; accepted: 'logits', 'loss', 'both' "
                         "or None")
    if return_type == "logits":
        return logits
    if return_type is None:
        return None
    B, T, C = logits.shape
    if labels is None:
        raise ValueError(f"return_type={return_type!r} needs labels= (LongTensor [{B}, {T}] "
                         "of per-step task labels, e.g. task.eval_set(...).labels; -100 = "
                         "ignore); accepted without labels: return_type='logits' or None")
    if not isinstance(labels, torch.Tensor) or labels.shape != (B, T) or \
            labels.is_floating_point() or labels.dtype == torch.bool:
        got = (f"{type(labels).__name__} {tuple(labels.shape)} {labels.dtype}"
               if isinstance(labels, torch.Tensor) else type(labels).__name__)
        raise ValueError(f"labels: got {got}; accepted: an integer tensor [{B}, {T}] "
                         f"with entries in 0..{C - 1} or -100 (ignored)")
    labels = labels.long().to(logits.device)
    bad = (labels != -100) & ((labels < 0) | (labels >= C))
    if bool(bad.any()):
        raise ValueError(f"label value {int(labels[bad][0])} is out of range; accepted: "
                         f"0..{C - 1} (n_classes={C}) or -100 (ignored)")
    per_token = torch.nn.functional.cross_entropy(
        logits.reshape(B * T, C), labels.reshape(B * T), ignore_index=-100,
        reduction="none").view(B, T)
    if loss_per_token:
        loss = per_token
    else:
        n = (labels != -100).sum()
        if int(n) == 0:
            raise ValueError("every label is -100 (ignored): the mean loss is undefined; "
                             "accepted: at least one label in 0..C-1")
        loss = per_token.sum() / n
    return loss if return_type == "loss" else (logits, loss)


class HookedRecurrentModule(HookedRootModule):
    """Base class: TL hooks + step-indexed caching for recurrent models.

    Subclasses implement ``forward(tokens, ...)``, ``hook_shapes(B, T)`` and call
    :meth:`validate_tokens`. In ``forward`` they use :meth:`editing_hooks` to decide between
    the fast path and the hooked loop, and :meth:`fill_step_caches` to fill per-step caches
    from the fast path.
    """

    per_step_hooks: tuple[str, ...] = ()

    # ------------------------------------------------------------------ inputs
    def validate_tokens(self, tokens) -> torch.Tensor:
        """Check ``tokens`` is an integer tensor [B, T] with entries in ``[0, d_vocab)``."""
        V = self.cfg.d_vocab
        if not isinstance(tokens, torch.Tensor):
            raise ValueError(f"tokens must be a torch.Tensor of shape [batch, time] with int "
                             f"dtype; got {type(tokens).__name__}")
        if tokens.dtype in (torch.bool,) or tokens.is_floating_point() or tokens.is_complex():
            raise ValueError(f"tokens have dtype {tokens.dtype}; accepted: an integer dtype "
                             "(torch.int64, int32, ...)")
        if tokens.ndim != 2:
            raise ValueError(f"tokens have shape {tuple(tokens.shape)}; accepted: "
                             "[batch, time] (2-D); use tokens[None] for one sequence")
        if tokens.shape[0] == 0 or tokens.shape[1] == 0:
            raise ValueError(f"tokens have shape {tuple(tokens.shape)}; batch and time must be >= 1")
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= V:
            bad = lo if lo < 0 else hi
            raise ValueError(f"token value {bad} is out of range; accepted: 0..{V - 1} "
                             f"(d_vocab={V})")
        return tokens.long()

    def resolve_normalize(self, normalize: bool | None) -> bool:
        """Per-step normalization: argument > cfg.normalize > eval mode (see ModelConfig)."""
        if normalize is None:
            normalize = self.cfg.normalize
        if normalize is None:
            normalize = (not self.training) and self.cfg.variant != "positive_diag"
        if not isinstance(normalize, bool):
            raise ValueError(f"normalize={normalize!r}; accepted: None, True or False")
        return normalize

    # ------------------------------------------------------------------ hooks
    def editing_hooks(self, name: str) -> bool:
        """True if hook point ``name`` has a forward hook that may change its value.

        Only the workbench's cache recorders are known to be read-only; any other hook
        (``run_with_hooks``, ``hooks()``, ``add_hook``) counts as editing. Backward hooks never
        change forward values, so they do not count here (see :meth:`has_bwd_hooks`).
        """
        hp = self.hook_dict[name]
        return _traced_externally(hp) or any(not is_cache_hook(h.user_hook) for h in hp.fwd_hooks)

    def has_bwd_hooks(self, name: str) -> bool:
        """True if hook point ``name`` has a backward hook (TL's or a plain PyTorch one)."""
        return bool(self.hook_dict[name]._backward_hooks)

    def has_hooks(self, name: str) -> bool:
        """True if hook point ``name`` has any forward or backward hook."""
        hp = self.hook_dict[name]
        return bool(hp.fwd_hooks) or bool(hp._backward_hooks) or _traced_externally(hp)

    def fill_step_caches(self, name: str, full: torch.Tensor) -> None:
        """Give a per-step site's cache recorders the whole ``[B, T, ...]`` value at once."""
        for h in self.hook_dict[name].fwd_hooks:
            if is_cache_hook(h.user_hook):
                h.user_hook.store_full(full, name)

    def finish_step_caches(self, name: str) -> None:
        """Stack what a per-step site's forward cache recorders collected in the hooked loop."""
        for h in self.hook_dict[name].fwd_hooks:
            if is_cache_hook(h.user_hook):
                h.user_hook.finish()

    def fire_step(self, name: str, h: torch.Tensor, t: int) -> torch.Tensor:
        """Fire a per-step hook point with ``hook.ctx["t"] = t`` (1-based), forward and backward."""
        hp = self.hook_dict[name]
        bwd = bool(hp._backward_hooks) and h.requires_grad and torch.is_grad_enabled()
        if bwd:
            h = _ClearStepOnBackward.apply(h, hp)
        hp.ctx["t"] = t
        try:
            out = hp(h)
        finally:
            hp.ctx.pop("t", None)
        return _SetStepOnBackward.apply(out, hp, t) if bwd else out

    def step_grad_hook(self, name: str) -> Callable[[torch.Tensor, int], torch.Tensor] | None:
        """The backward hooks of per-step site ``name`` as one callable for a fast path.

        A fast path that runs the whole recurrence in one autograd node never calls the hook
        point, so PyTorch cannot fire its backward hooks; the node's reverse loop calls the
        returned ``fn(grad [B, H], t) -> grad`` instead, with the gradient of the output with
        respect to h_t (the total one: through the readout and every later step), exactly what
        the hook point's backward hook gets in the hooked loop. What a hook returns replaces the
        gradient flowing on to step t-1, as in the loop. The hooks present now are the ones that
        fire (PyTorch's own rule for module backward hooks). None when there are none.
        """
        hp = self.hook_dict[name]
        fns = list(hp._backward_hooks.values())
        if not fns or not torch.is_grad_enabled():
            return None
        recorders = [h.user_hook for h in hp.bwd_hooks if is_cache_hook(h.user_hook)]
        if len(recorders) == len(fns):
            return _GradCollector(hp, recorders)

        def fire(g: torch.Tensor, t: int) -> torch.Tensor:
            hp.ctx["t"] = t
            try:
                grad_in = (g,)
                for fn in fns:   # torch's BackwardHook: each sees grad_output, returns grad_input
                    out = fn(hp, grad_in, (g,))
                    if out is not None:
                        grad_in = tuple(out)
            finally:
                hp.ctx.pop("t", None)
            return grad_in[0]

        return fire

    def embed_input(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Make a constant input (one-hot) a leaf that requires grad when ``name`` has a backward
        hook: PyTorch fires a module's backward hooks only for inputs that require grad."""
        if self.has_bwd_hooks(name) and torch.is_grad_enabled() and not x.requires_grad:
            x = x.detach().requires_grad_(True)
        return x

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        try:
            dev = next(self.parameters()).device
            object.__setattr__(self.cfg, "device", str(dev))
        except StopIteration:
            pass
        return out

    # ------------------------------------------------------------------ TL conventions
    RETURN_TYPES = RETURN_TYPES

    def model_output(self, logits: torch.Tensor, return_type="logits", labels=None,
                     loss_per_token: bool = False):
        """What ``forward`` returns for ``return_type`` (see :func:`output_for_return_type`)."""
        return output_for_return_type(logits, return_type, labels, loss_per_token)

    @classmethod
    def from_pretrained(cls, name: str, **load_kwargs):
        """A zoo model (or checkpoint folder) by name, as TransformerLens's ``from_pretrained``.

        The alias of :func:`workbench.load_checkpoint` that returns only the model (eval mode);
        nothing is downloaded, names are those of ``checkpoints/index.json``.
        """
        # The public, lazily resolved API (workbench/__init__.py), called at run time: loading
        # sits above the models (checkpoints build them), so no module import goes upward.
        import workbench

        model, _ = workbench.load_checkpoint(name, **load_kwargs)
        if not isinstance(model, cls):
            raise ValueError(f"{name!r} is a {type(model).__name__} (variant "
                             f"{model.cfg.variant!r}), not a {cls.__name__}; accepted: call "
                             f"{type(model).__name__}.from_pretrained or workbench.load_checkpoint")
        return model

    # ------------------------------------------------------------------ caching
    def hook_shapes(self, batch: int, length: int) -> dict[str, tuple[int, ...]]:
        """Shape of each hook's cached value for a [batch, length] input (dim 1 = step)."""
        raise NotImplementedError

    def cache_plan(self, batch: int, length: int, names_filter=None, steps=None,
                   dtype: torch.dtype | None = None,
                   incl_bwd: bool = False) -> dict[str, tuple[tuple[int, ...], int]]:
        """Name -> (cached shape, bytes) of what ``run_with_cache`` would store
        (with ``incl_bwd``, the ``name + "_grad"`` entries too)."""
        keep = _names_filter_fn(names_filter)
        steps = parse_steps(steps, length)
        if dtype is None:
            dtype = next(self.parameters()).dtype
        item = torch.empty((), dtype=dtype).element_size()
        plan = {}
        for name, shape in self.hook_shapes(batch, length).items():
            if not keep(name):
                continue
            shape = list(shape)
            if steps is not None and not name.endswith("hook_h0"):
                shape[1] = len(steps)
            n = 1
            for s in shape:
                n *= s
            plan[name] = (tuple(shape), n * item)
            if incl_bwd:
                plan[name + "_grad"] = (tuple(shape), n * item)
        return plan

    def get_caching_hooks(self, names_filter=None, incl_bwd: bool = False, device=None,
                          remove_batch_dim: bool = False, cache: dict | None = None,
                          pos_slice=None, steps: list[int] | None = None):
        """Step-aware replacement of TL's caching hooks (same return: cache, fwd, bwd).

        With ``incl_bwd`` every selected hook point also gets a backward recorder that stores
        ``cache[name + "_grad"]``, the gradient with respect to that activation, in the same
        layout (per-step sites: ``[B, n_steps, ...]``, the same ``steps``).
        """
        if remove_batch_dim or pos_slice is not None:
            raise ValueError("remove_batch_dim / pos_slice are not supported; accepted: use "
                             "steps= to keep some steps, and index the batch afterwards")
        keep = _names_filter_fn(names_filter)
        cache = {} if cache is None else cache
        fwd, bwd = [], []
        for name in self.hook_dict:
            if keep(name):
                has_step_axis = not name.endswith("hook_h0")
                fwd.append((name, StepCacheRecorder(cache, steps, device, has_step_axis)))
                if incl_bwd:
                    bwd.append((name, StepCacheRecorder(cache, steps, device, has_step_axis,
                                                        is_backward=True)))
        return cache, fwd, bwd

    def run_with_cache(self, tokens, *model_args, names_filter=None, steps=None,
                       max_cache_bytes: int | None = DEFAULT_MAX_CACHE_BYTES, device=None,
                       remove_batch_dim: bool = False, incl_bwd: bool = False,
                       reset_hooks_end: bool = True, clear_contexts: bool = False,
                       pos_slice=None, **model_kwargs):
        """Run the model and cache every step of the selected hook points.

        Parameters
        ----------
        tokens : LongTensor [B, T]
        names_filter : None | str | list[str] | Callable[[str], bool]
            Which hooks to cache (None = all), as in TransformerLens.
        steps : None | int | iterable of int
            1-based steps to keep (negative counts from the end); None keeps all.
        max_cache_bytes : int or None
            Refuse, before running, a cache larger than this (default 1 GiB); None = no limit.
        device : where to store the cache (default: the model's device).
        incl_bwd : bool
            As in TransformerLens: call ``backward()`` on the output, which must then be a
            scalar (``return_type="loss", labels=...``), and cache ``name + "_grad"`` for every
            cached name, same layout and steps. Parameter ``.grad`` accumulates, as in TL.

        Returns
        -------
        output : what ``return_type`` asks for (default logits [B, T, C])
        cache : StepCache
            ``cache[name]`` is ``[B, n_steps, ...]`` (``hook_h0``: ``[B, H]``).
        """
        tokens = self.validate_tokens(tokens)
        B, T = tokens.shape
        steps_list = parse_steps(steps, T)
        plan = self.cache_plan(B, T, names_filter, steps_list, incl_bwd=incl_bwd)
        total = sum(b for _, b in plan.values())
        if max_cache_bytes is not None and total > max_cache_bytes:
            big = sorted(plan.items(), key=lambda kv: -kv[1][1])
            listing = "; ".join(f"{n} {list(s)} = {_format_bytes(b)}" for n, (s, b) in big)
            raise ValueError(
                f"the requested cache needs {_format_bytes(total)}, above max_cache_bytes="
                f"{_format_bytes(max_cache_bytes)}: {listing}. Accepted: narrow names_filter "
                "(e.g. drop 'hook_transition'), pass steps=, a smaller batch, or raise "
                "max_cache_bytes (None = no limit)")
        if incl_bwd and not torch.is_grad_enabled():
            raise ValueError("incl_bwd=True needs gradients, but run_with_cache was called "
                             "under torch.no_grad(); accepted: call it with grad enabled")
        cache, fwd, bwd = self.get_caching_hooks(names_filter, incl_bwd, device,
                                                 remove_batch_dim, pos_slice=pos_slice,
                                                 steps=steps_list)
        with self.hooks(fwd_hooks=fwd, bwd_hooks=bwd, reset_hooks_end=reset_hooks_end,
                        clear_contexts=clear_contexts):
            out = self(tokens, *model_args, **model_kwargs)
            if incl_bwd:
                if not isinstance(out, torch.Tensor) or out.numel() != 1:
                    what = (f"a tensor of shape {tuple(out.shape)}"
                            if isinstance(out, torch.Tensor) else type(out).__name__)
                    raise ValueError(
                        f"incl_bwd=True calls backward() on the model's output, which is {what}; "
                        "accepted: a scalar output, return_type='loss' with labels= [B, T] "
                        "(or use run_with_hooks(bwd_hooks=...) and your own metric's backward)")
                out.backward()
        for _, rec in fwd + bwd:
            rec.finish()
        return out, StepCache(cache, self, steps_list)

    def add_caching_hooks(self, names_filter=None, incl_bwd: bool = False, device=None,
                          remove_batch_dim: bool = False, cache: dict | None = None) -> dict:
        """Caching hooks that stay until ``reset_hooks()`` (TL API); returns the cache dict.

        Every forward refills it: per-step sites as ``[B, T, ...]`` on either path; with
        ``incl_bwd`` a later ``backward()`` adds ``name + "_grad"`` entries.
        """
        cache, fwd, bwd = self.get_caching_hooks(names_filter, incl_bwd, device,
                                                 remove_batch_dim, cache)
        for name, rec in fwd:
            self.hook_dict[name].add_hook(rec, dir="fwd")
        for name, rec in bwd:
            self.hook_dict[name].add_hook(rec, dir="bwd")
        return cache
