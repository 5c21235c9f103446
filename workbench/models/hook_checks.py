"""Checks on hooks: names that exist, filters that match, return values that fit.

TransformerLens trusts its caller: a hook on a misspelt name raises a bare ``KeyError`` from
``mod_dict``, a ``names_filter`` with a typo returns an empty cache, and a hook that returns a
tensor of the wrong shape or dtype surfaces as a torch error deep in the recurrence (or, on
``hook_out`` / ``hook_logits``, silently changes the output's shape). The danger is the silent
cases: an experiment that "patched" nothing, or a result with the wrong shape.

:class:`CheckedHooksMixin` sits in front of ``HookedRootModule`` in the recurrent models' MRO
and turns each case into a ``ValueError`` naming the hook (and the step, for per-step hooks),
the value and what is accepted.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Callable

import torch


def _listing(names) -> str:
    return ", ".join(names)


def check_hook_name(model, name) -> None:
    """``name`` (a hook name or a filter function) must select at least one hook point."""
    names = list(model.hook_dict)
    if isinstance(name, str):
        if name not in model.hook_dict:
            raise ValueError(f"hook name {name!r} is not a hook of this {type(model).__name__}; "
                             f"accepted: {_listing(names)}")
        return
    if callable(name):
        if not any(name(n) for n in names):
            raise ValueError(f"hook filter {name!r} matches no hook of this {type(model).__name__}; "
                             f"accepted: a name or filter matching one of {_listing(names)}")
        return
    raise ValueError(f"hook name {name!r} is neither a string nor a function name -> bool; "
                     f"accepted: one of {_listing(names)}")


def check_names_filter(model, names_filter) -> None:
    """A ``names_filter`` for caching: every listed name exists, a function matches something.

    Accepted: None (all hooks), a hook name, an iterable of hook names, or a function
    ``name -> bool`` that is true for at least one hook.
    """
    if names_filter is None:
        return
    names = list(model.hook_dict)
    if isinstance(names_filter, str) or callable(names_filter):
        try:
            check_hook_name(model, names_filter)
        except ValueError as e:
            raise ValueError(f"names_filter: {e}") from None
        return
    if isinstance(names_filter, Iterable):
        given = list(names_filter)
        unknown = [n for n in given if not isinstance(n, str) or n not in model.hook_dict]
        if unknown:
            raise ValueError(f"names_filter entries {unknown!r} match no hook; accepted: "
                             f"{_listing(names)}")
        if not given:
            raise ValueError("names_filter is empty, so nothing would be cached; accepted: None "
                             f"(all hooks) or some of {_listing(names)}")
        return
    raise ValueError(f"names_filter={names_filter!r}; accepted: None, a hook name, a list of hook "
                     "names or a function name -> bool")


def check_hook_return(hook_point, given: torch.Tensor, returned, direction: str = "fwd") -> None:
    """A hook's return value must be None or a tensor like the one it was given."""
    t = hook_point.ctx.get("t") if hasattr(hook_point, "ctx") else None
    where = f"hook on {hook_point.name}" + (f" at step {t}" if t is not None else "") + \
        (" (backward)" if direction == "bwd" else "")
    like = f"None or a tensor of shape {list(given.shape)}, dtype {given.dtype}, device {given.device}"
    if not isinstance(returned, torch.Tensor):
        raise ValueError(f"{where} returned a {type(returned).__name__}; accepted: {like}")
    problems = []
    if returned.shape != given.shape:
        problems.append(f"shape {list(returned.shape)}")
    if returned.dtype != given.dtype:
        problems.append(f"dtype {returned.dtype}")
    if returned.device != given.device:
        problems.append(f"device {returned.device}")
    if problems:
        raise ValueError(f"{where} returned a tensor of {', '.join(problems)}; accepted: {like} "
                         "(edit the tensor it is given, e.g. a clone, rather than a slice of it)")


class CheckedHook:
    """Calls ``fn`` and checks what it returns (see :func:`check_hook_return`)."""

    def __init__(self, fn: Callable, direction: str):
        self.fn = fn
        self.direction = direction

    def __call__(self, tensor, hook):
        out = self.fn(tensor, hook=hook)
        if out is not None and isinstance(tensor, torch.Tensor):
            check_hook_return(hook, tensor, out, self.direction)
        return out

    def __repr__(self) -> str:
        return repr(self.fn)


def checked(fn: Callable, direction: str) -> Callable:
    """``fn`` wrapped in a :class:`CheckedHook` (read-only cache recorders stay as they are:
    models recognise them by their ``is_step_cache`` attribute)."""
    if getattr(fn, "is_step_cache", False) or isinstance(fn, CheckedHook):
        return fn
    return CheckedHook(fn, direction)


class CheckedHooksMixin:
    """Name and return-value checks for every way TransformerLens adds a hook.

    ``hooks()`` / ``run_with_hooks`` go through ``_enable_hook``; ``add_hook`` through
    ``check_and_add_hook``. Both are overridden here, before ``HookedRootModule`` in the MRO.
    """

    def _enable_hook(self, name, hook, dir):  # noqa: A002  (TransformerLens's signature)
        check_hook_name(self, name)
        return super()._enable_hook(name, checked(hook, dir), dir)

    def add_hook(self, name, hook, dir="fwd", is_permanent=False, level=None, prepend=False):  # noqa: A002
        check_hook_name(self, name)
        return super().add_hook(name, hook, dir=dir, is_permanent=is_permanent, level=level,
                                prepend=prepend)

    def check_and_add_hook(self, hook_point, hook_point_name, hook, dir="fwd", is_permanent=False,  # noqa: A002
                           level=None, prepend=False):
        return super().check_and_add_hook(hook_point, hook_point_name, checked(hook, dir), dir=dir,
                                          is_permanent=is_permanent, level=level, prepend=prepend)
