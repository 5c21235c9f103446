"""Device choice for training, evaluation and analysis (``--device cpu|cuda|auto``).

One rule everywhere: random draws (initial weights, training batches, evaluation sets) happen
on the CPU with the CPU generators and are then moved, so a seed means the same data and the
same initial weights on every device; checkpoints and training states always hold CPU tensors.
"""
from __future__ import annotations

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def check_device_spec(spec) -> str:
    """Validate a device spec without importing torch: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if isinstance(spec, str):
        if spec in DEVICE_CHOICES:
            return spec
        head, _, idx = spec.partition(":")
        if head == "cuda" and idx.isdigit():
            return spec
    raise ValueError(f"device={spec!r}; accepted: auto (CUDA when present), cpu, cuda, cuda:N")


def resolve_device(spec: str = "auto"):
    """The ``torch.device`` for a spec; ``auto`` is CUDA when available, else CPU.

    Raises ``ValueError`` (one line, the CLI's exit 2) when CUDA is asked for and absent.
    """
    import torch

    spec = check_device_spec(spec)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        why = ("this torch build has no CUDA support" if torch.version.cuda is None
               else "no CUDA device is visible")
        raise ValueError(f"device={spec!r} but CUDA is not available ({why}, torch "
                         f"{torch.__version__}); accepted here: cpu, auto")
    dev = torch.device(spec)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={spec!r} but only {torch.cuda.device_count()} CUDA device(s) "
                         f"exist; accepted: cuda:0 ... cuda:{torch.cuda.device_count() - 1}")
    return dev


def model_device(model):
    """The device of a module's first parameter or buffer (CPU for a module with neither)."""
    import torch

    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")
