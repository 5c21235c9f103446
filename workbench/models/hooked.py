"""Hook machinery for recurrent models: per-step hook points, step-indexed caches, memory guard.

TransformerLens (TL) keeps only the *last* value when a hook point fires more than once, and
its caching slices positions assuming ``[batch, pos, ...]``. A recurrent model fires
``blocks.{l}.hook_state`` once per step, so this module provides:

* :class:`HookedRecurrentModule`, a ``HookedRootModule`` whose ``run_with_cache`` returns every
  step (``[B, T, ...]``), accepts ``steps=`` and refuses an oversized cache *before* running;
* :class:`StepCacheRecorder`, the caching hook: it knows the step from ``hook.ctx["t"]`` and
  can also be filled in one go from the fast path (so caching all states costs no per-step
  Python hooks);
* :func:`state_patch_setter`, a patch setter for ``generic_activation_patch`` on per-step sites.

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

    def step_index(self, step: int) -> int:
        """Index along dim 1 of the cached tensors of the 1-based ``step``."""
        if self.steps is None:
            return step - 1
        if step not in self.steps:
            raise ValueError(f"step={step} was not cached; cached steps: {self.steps}")
        return self.steps.index(step)


class StepCacheRecorder:
    """Forward hook that caches a hook point's value, per step or whole.

    Fired per step (``"t"`` in ``hook.ctx``), it stores the ``[B, ...]`` tensor of the wanted
    steps and stacks them at :meth:`finish`; fired once with ``[B, T, ...]`` it keeps the wanted
    positions. Models call :meth:`store_full` to fill a per-step site from the fast path.
    The attribute ``is_step_cache`` tells models that this hook only reads.
    """

    is_step_cache = True

    def __init__(self, store: dict, steps: list[int] | None, device=None, has_step_axis=True):
        self.store = store
        self.steps = steps
        self.device = device
        self.has_step_axis = has_step_axis
        self._parts: dict[int, torch.Tensor] = {}
        self._name: str | None = None

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
            return None
        self.store_full(tensor, hook.name)
        return None

    def store_full(self, tensor: torch.Tensor, name: str) -> None:
        """Cache a whole ``[B, T, ...]`` tensor (or ``[B, ...]`` without a step axis)."""
        self._name = name
        x = self._keep(tensor)
        if self.has_step_axis and self.steps is not None:
            x = x[:, [s - 1 for s in self.steps]]
        self.store[name] = x

    def finish(self) -> None:
        if self._parts and self._name is not None:
            order = sorted(self._parts) if self.steps is None else self.steps
            self.store[self._name] = torch.stack([self._parts[t] for t in order], dim=1)
            self._parts = {}


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
        (``run_with_hooks``, ``hooks()``, ``add_hook``) counts as editing.
        """
        hp = self.hook_dict[name]
        return any(not is_cache_hook(h.user_hook) for h in hp.fwd_hooks)

    def has_hooks(self, name: str) -> bool:
        return bool(self.hook_dict[name].fwd_hooks)

    def fill_step_caches(self, name: str, full: torch.Tensor) -> None:
        """Give a per-step site's cache recorders the whole ``[B, T, ...]`` value at once."""
        for h in self.hook_dict[name].fwd_hooks:
            if is_cache_hook(h.user_hook):
                h.user_hook.store_full(full, name)

    def fire_step(self, name: str, h: torch.Tensor, t: int) -> torch.Tensor:
        """Fire a per-step hook point with ``hook.ctx["t"] = t`` (1-based)."""
        hp = self.hook_dict[name]
        hp.ctx["t"] = t
        try:
            return hp(h)
        finally:
            hp.ctx.pop("t", None)

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        try:
            dev = next(self.parameters()).device
            object.__setattr__(self.cfg, "device", str(dev))
        except StopIteration:
            pass
        return out

    # ------------------------------------------------------------------ caching
    def hook_shapes(self, batch: int, length: int) -> dict[str, tuple[int, ...]]:
        """Shape of each hook's cached value for a [batch, length] input (dim 1 = step)."""
        raise NotImplementedError

    def cache_plan(self, batch: int, length: int, names_filter=None, steps=None,
                   dtype: torch.dtype | None = None) -> dict[str, tuple[tuple[int, ...], int]]:
        """Name -> (cached shape, bytes) of what ``run_with_cache`` would store."""
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
        return plan

    def get_caching_hooks(self, names_filter=None, incl_bwd: bool = False, device=None,
                          remove_batch_dim: bool = False, cache: dict | None = None,
                          pos_slice=None, steps: list[int] | None = None):
        """Step-aware replacement of TL's caching hooks (same return: cache, fwd, bwd)."""
        if incl_bwd:
            raise ValueError("incl_bwd=True is not supported by recurrent models; accepted: "
                             "False (add backward hooks with run_with_hooks(bwd_hooks=...))")
        if remove_batch_dim or pos_slice is not None:
            raise ValueError("remove_batch_dim / pos_slice are not supported; accepted: use "
                             "steps= to keep some steps, and index the batch afterwards")
        keep = _names_filter_fn(names_filter)
        cache = {} if cache is None else cache
        fwd = []
        for name in self.hook_dict:
            if keep(name):
                rec = StepCacheRecorder(cache, steps, device,
                                        has_step_axis=not name.endswith("hook_h0"))
                fwd.append((name, rec))
        return cache, fwd, []

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

        Returns
        -------
        logits : Tensor [B, T, C]
        cache : StepCache
            ``cache[name]`` is ``[B, n_steps, ...]`` (``hook_h0``: ``[B, H]``).
        """
        tokens = self.validate_tokens(tokens)
        B, T = tokens.shape
        steps_list = parse_steps(steps, T)
        plan = self.cache_plan(B, T, names_filter, steps_list)
        total = sum(b for _, b in plan.values())
        if max_cache_bytes is not None and total > max_cache_bytes:
            big = sorted(plan.items(), key=lambda kv: -kv[1][1])
            listing = "; ".join(f"{n} {list(s)} = {_format_bytes(b)}" for n, (s, b) in big)
            raise ValueError(
                f"the requested cache needs {_format_bytes(total)}, above max_cache_bytes="
                f"{_format_bytes(max_cache_bytes)}: {listing}. Accepted: narrow names_filter "
                "(e.g. drop 'hook_transition'), pass steps=, a smaller batch, or raise "
                "max_cache_bytes (None = no limit)")
        cache, fwd, _ = self.get_caching_hooks(names_filter, incl_bwd, device,
                                               remove_batch_dim, pos_slice=pos_slice,
                                               steps=steps_list)
        with self.hooks(fwd_hooks=fwd, reset_hooks_end=reset_hooks_end,
                        clear_contexts=clear_contexts):
            out = self(tokens, *model_args, **model_kwargs)
        for _, rec in fwd:
            rec.finish()
        return out, StepCache(cache, self, steps_list)

    def add_caching_hooks(self, names_filter=None, incl_bwd: bool = False, device=None,
                          remove_batch_dim: bool = False, cache: dict | None = None) -> dict:
        """Permanent-until-reset caching hooks (TL API). Per-step values are stacked only by
        ``run_with_cache``; here a per-step site keeps its last ``finish()``-ed value, so
        prefer ``run_with_cache``."""
        cache, fwd, _ = self.get_caching_hooks(names_filter, incl_bwd, device,
                                               remove_batch_dim, cache)
        for name, rec in fwd:
            self.hook_dict[name].add_hook(rec, dir="fwd")
        return cache
