"""Safe checkpoints: save, validate and load model folders, and resolve zoo names.

A checkpoint is a folder::

    model.safetensors   weights (safetensors only: loading never runs code, no pickle anywhere)
    config.json         format_version, model config, task spec, training config, versions, seed,
                        and the SHA-256 of model.safetensors
    metrics.json        accuracy per length (raw and chance-normalized), train time, steps

The danger this module guards against is a checkpoint that loads *silently wrong*: a truncated
copy, a hand-edited config whose hidden size no longer matches the weights, a flipped byte in a
tensor. Every such case raises :class:`CheckpointError` (a ``ValueError``) naming the file and
what is wrong. The weights' SHA-256 lives in ``config.json``, and ``config.json`` is written
last, so a write interrupted half-way (new weights, old config) is detected rather than loaded.

Writes are atomic per file: temporary file in the same folder, ``fsync``, ``os.replace``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from workbench.variants import VARIANTS

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
INDEX_FILE = "index.json"

#: Variants ``workbench.models.build_model`` accepts (internals.md). Checked before building so
#: that a hand-edited variant gets a message naming the accepted forms.
KNOWN_VARIANTS = VARIANTS

# safetensors dtype names -> bytes per element (the ones torch can produce).
_ST_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1,
}


class CheckpointError(ValueError):
    """A checkpoint folder (or the zoo index) is missing, malformed or inconsistent."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint folder or zoo model of that name (a ``FileNotFoundError`` too)."""


#: ``config.json`` key holding the SHA-256 of the rest of ``config.json`` (which includes
#: ``weights_sha256``): one hash binds the weights to the model config, the task spec and
#: the normalisation setting, so editing any of them is detected.
CONFIG_HASH_KEY = "config_sha256"
WEIGHTS_HASH_KEY = "weights_sha256"

_TORCH_TO_ST = {"float32": "F32", "float64": "F64", "float16": "F16", "bfloat16": "BF16",
                "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8",
                "bool": "BOOL"}


# --------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------

def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same folder (same filesystem, so the rename is
    atomic), are flushed and fsynced, then ``os.replace`` swaps them in and the folder is
    fsynced. A crash leaves either the old file or the new one, never a mixture.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        # mkstemp creates the file 0600; a checkpoint is shared like any file the user writes.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable; not supported on every platform
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


TMP_SUFFIX = ".tmp"


def _umask() -> int:
    """The process umask, read without changing it where the platform allows (no race)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_write_bytes` left in ``folder``.

    Only names of the form ``.<file>.<random>.tmp`` are touched. Call it only where no other
    process is writing into the same folder (training owns its output folder).
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX) and p.is_file():
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def atomic_write_csv(path: str | os.PathLike, fieldnames, rows, command: str) -> None:
    """A results table: first line ``# made by: COMMAND``, then the CSV of ``rows`` (dicts;
    keys outside ``fieldnames`` are ignored), written atomically."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fieldnames), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, f"# made by: {command}\n{buf.getvalue()}".encode())


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (non-finite floats are refused)."""
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())


#: Largest config/metrics/index JSON read (the zoo's largest is ~3 KB).
MAX_JSON_BYTES = 64 << 20


def read_json(path: str | os.PathLike, what: str | None = None) -> Any:
    """Read a JSON file, raising :class:`CheckpointError` with the position of a syntax error."""
    path = Path(path)
    what = what or str(path)
    if not path.is_file():
        raise CheckpointError(f"{what}: file not found")
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise CheckpointError(f"{what}: {size:,} bytes; accepted: a JSON file of at most "
                              f"{MAX_JSON_BYTES:,} bytes")
    try:
        return json.loads(path.read_text())
    except RecursionError:
        raise CheckpointError(f"{what}: malformed JSON (nested too deeply)") from None
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{what}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"{what}: malformed JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None


# --------------------------------------------------------------------------------------------
# safetensors with structural checks
# --------------------------------------------------------------------------------------------

def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_sha256(config: dict) -> str:
    """SHA-256 of every key of a checkpoint's ``config.json`` except :data:`CONFIG_HASH_KEY`,
    in canonical JSON (sorted keys, no whitespace), so re-indenting the file does not matter."""
    body = {k: v for k, v in config.items() if k != CONFIG_HASH_KEY}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"config cannot be hashed ({e})") from None
    return sha256_bytes(text.encode())


def tensors_to_bytes(tensors: dict, metadata: dict[str, str] | None = None) -> bytes:
    """Serialise ``{name: tensor}`` with safetensors (contiguous CPU copies, no shared storage)."""
    from safetensors.torch import save

    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return _sorted_metadata(save(clean, metadata=metadata))


def _sorted_metadata(data: bytes) -> bytes:
    """The same file with its ``__metadata__`` keys in sorted order.

    safetensors writes metadata from a hash map whose order changes from process to process, so
    identical tensors would get a different ``weights_sha256`` in every run; sorting the keys makes
    the bytes (and the hash) a function of the content alone.
    """
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    if meta is not None:
        header = {"__metadata__": dict(sorted(meta.items())), **header}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)   # safetensors aligns the data to 8 bytes
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def check_safetensors_bytes(data: bytes, what: str) -> dict[str, dict]:
    """Validate the layout of a safetensors blob before handing it to the parser.

    safetensors itself rejects most damage, but with terse messages; this names the problem
    (truncated, garbled header, overlapping or out-of-range offsets, size not matching shape).

    Returns
    -------
    header : dict
        ``{tensor name: {"dtype": str, "shape": list[int], "data_offsets": [begin, end]}}``.
    """
    n = len(data)
    if n < 8:
        raise CheckpointError(f"{what}: truncated ({n} bytes; a safetensors file has at least 8)")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > n - 8:
        raise CheckpointError(
            f"{what}: truncated or garbled (header claims {header_len} bytes, file has {n - 8} "
            "after the length field)")
    return _parse_header(data[8:8 + header_len], n - 8 - header_len, what)[0]


def read_safetensors_header(path: str | os.PathLike, what: str | None = None) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a safetensors file from its header alone (the tensor data is
    not read), with the same structural checks as :func:`check_safetensors_bytes`."""
    path = Path(path)
    what = what or str(path)
    if not path.is_file():
        raise CheckpointError(f"{what}: file not found")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{what}: truncated ({len(head)} bytes; a safetensors file has at least 8)")
        header_len = int.from_bytes(head, "little")
        if header_len > size - 8:
            raise CheckpointError(
                f"{what}: truncated or garbled (header claims {header_len} bytes, file has "
                f"{size - 8} after the length field)")
        header = f.read(header_len)
    return _parse_header(header, size - 8 - header_len, what)


def read_safetensors_metadata(path: str | os.PathLike, what: str | None = None) -> dict[str, str]:
    """The ``__metadata__`` mapping of a safetensors file (header only)."""
    return read_safetensors_header(path, what)[1]


def _is_count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _parse_header(raw: bytes, body: int, what: str) -> tuple[dict[str, dict], dict[str, str]]:
    """Check a safetensors JSON header against a data section of ``body`` bytes."""
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{what}: garbled header (not valid JSON)") from None
    except RecursionError:
        raise CheckpointError(f"{what}: garbled header (nested too deeply)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{what}: garbled header (not a JSON object)")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise CheckpointError(f"{what}: garbled header (__metadata__ must map strings to strings)")
    spans = []
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise CheckpointError(f"{what}: garbled header entry for tensor {name!r} (not an object)")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in _ST_ITEMSIZE:
            raise CheckpointError(f"{what}: tensor {name!r} has unknown dtype {dtype!r}; accepted: "
                                  f"{', '.join(_ST_ITEMSIZE)}")
        if not isinstance(shape, list) or len(shape) > 64 or not all(_is_count(d) for d in shape):
            raise CheckpointError(f"{what}: tensor {name!r} has a garbled shape {shape!r} (expected "
                                  "a list of non-negative integers)")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets) \
                or offsets[0] > offsets[1]:
            raise CheckpointError(f"{what}: tensor {name!r} has garbled data_offsets {offsets!r} "
                                  "(expected [begin, end], integers with 0 <= begin <= end)")
        begin, end = offsets
        expected = math.prod(shape) * _ST_ITEMSIZE[dtype]
        if end - begin != expected:
            raise CheckpointError(
                f"{what}: tensor {name!r} spans {end - begin} bytes but shape {shape} x {dtype} "
                f"needs {expected} (garbled header)")
        if end > body:
            raise CheckpointError(
                f"{what}: truncated (tensor {name!r} ends at byte {end} of the data section, "
                f"which has only {body})")
        spans.append((begin, end))
        out[name] = {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}
    spans.sort()
    pos = 0
    for begin, end in spans:
        if begin != pos:
            raise CheckpointError(f"{what}: garbled header (tensor data overlaps or has gaps)")
        pos = end
    if pos != body:
        raise CheckpointError(
            f"{what}: {body - pos} unexpected trailing bytes after the tensor data (garbled)")
    return out, metadata


def load_tensors(path: str | os.PathLike, what: str | None = None,
                 expected_sha256: str | None = None) -> dict:
    """Load a safetensors file into ``{name: tensor}`` after structural (and hash) checks."""
    from safetensors.torch import load

    path = Path(path)
    what = what or str(path)
    if not path.is_file():
        raise CheckpointError(f"{what}: file not found")
    data = path.read_bytes()
    if expected_sha256 is not None and sha256_bytes(data) != expected_sha256:
        # Structural damage gets the more specific message first.
        check_safetensors_bytes(data, what)
        raise CheckpointError(
            f"{what}: contents do not match the SHA-256 recorded in config.json (the weights "
            "were changed or corrupted after saving)")
    check_safetensors_bytes(data, what)
    try:
        return load(data)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{what}: cannot be parsed ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------------

def package_versions() -> dict[str, str]:
    """Versions of the packages that determine a checkpoint's numbers (no heavy imports)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("bilinear-workbench", "torch", "numpy", "safetensors", "transformer-lens"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _json_safe(obj):
    """Convert numpy scalars / tuples / int keys so that the JSON round trip is lossless."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    return obj


def save_checkpoint(path: str | os.PathLike, model, task_spec: str, train_config: dict,
                    metrics: dict, seed: int | None = None) -> Path:
    """Write a checkpoint folder atomically.

    Parameters
    ----------
    path : folder to create or overwrite.
    model : a ``workbench.models`` module with a ``cfg`` (ModelConfig) attribute.
    task_spec : the spec ``make_task`` accepts, e.g. ``"cyclic:5"``, or the ``Task`` itself. A
        user automaton (``automaton:PATH.json``, ``Task.from_automaton``) is stored in
        ``config.json`` under ``"automaton"``, so loading never needs the file again.
    train_config : JSON-safe training settings (recorded, not interpreted here).
    metrics : JSON-safe metrics (``accuracy`` {length: acc}, ``normalized_accuracy``, ...).
    seed : the training seed (defaults to ``train_config["seed"]``).

    Refuses (``ValueError``) weights with NaN/inf: a broken model is never written.
    """
    import torch

    path = Path(path)
    cfg = _model_config_of(model)
    task_spec, automaton = _task_entry(task_spec)
    state = model.state_dict()
    for name, t in state.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"refusing to save checkpoint {path}: tensor {name!r} has NaN/inf")
    blob = tensors_to_bytes(state, metadata={"format": "pt", "workbench_format": str(FORMAT_VERSION)})
    config = {
        "format_version": FORMAT_VERSION,
        "model": cfg.to_dict(),
        "task": task_spec,
        "training": _json_safe(train_config),
        "seed": seed if seed is not None else train_config.get("seed"),
        "versions": package_versions(),
        WEIGHTS_HASH_KEY: sha256_bytes(blob),
    }
    if automaton is not None:
        config["automaton"] = automaton
    config[CONFIG_HASH_KEY] = config_sha256(config)
    if path.exists() and not path.is_dir():
        raise ValueError(f"cannot save checkpoint: {path} is a file; accepted: a folder path")
    path.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    # Order matters: weights, metrics, then config (which carries the weights' hash). A crash
    # before config.json is replaced leaves a hash mismatch that load_checkpoint reports.
    atomic_write_bytes(path / WEIGHTS_FILE, blob)
    atomic_write_json(path / METRICS_FILE, _json_safe(metrics))
    atomic_write_json(path / CONFIG_FILE, config)
    return path


def _task_entry(task) -> tuple[str, dict | None]:
    """(spec, stored automaton or None) of a spec string or Task."""
    if isinstance(task, str):
        if not task.strip().startswith("automaton"):
            return task, None
        from workbench.tasks import make_task

        task = make_task(task)
    if not hasattr(task, "automaton_record") or not isinstance(getattr(task, "spec", None), str):
        raise ValueError(f"task_spec must be a task spec string or a Task, got {type(task).__name__}")
    return task.spec, task.automaton_record() if task.family == "automaton" else None


def task_of_config(config: dict, what: str = "config.json"):
    """The Task a checkpoint's ``config.json`` describes: its stored automaton if it has one,
    else ``make_task(config["task"])``."""
    from workbench.tasks import Task, make_task

    spec = config["task"]
    try:
        if "automaton" in config:
            return Task.from_record(config["automaton"], spec=spec, what=f"{what}: stored automaton")
        if spec.strip().startswith("automaton"):
            raise ValueError("an automaton task's checkpoint must store the automaton "
                             "(key 'automaton' missing)")
        return make_task(spec)
    except ValueError as e:
        raise CheckpointError(f"{what}: bad task spec {spec!r}: {e}") from None


def _model_config_of(model):
    # model_config first: the transformer baseline's .cfg is TransformerLens's own config.
    cfg = getattr(model, "model_config", None) or getattr(model, "cfg", None) \
        or getattr(model, "config", None)
    if cfg is None or not hasattr(cfg, "to_dict"):
        raise ValueError("model has no ModelConfig at .cfg (expected a workbench.models module)")
    return cfg


# --------------------------------------------------------------------------------------------
# zoo index and name resolution
# --------------------------------------------------------------------------------------------

def zoo_root() -> Path:
    """The shipped zoo folder: ``$WORKBENCH_CHECKPOINTS`` or ``<repo>/checkpoints``."""
    env = os.environ.get("WORKBENCH_CHECKPOINTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "checkpoints"


def read_index(root: str | os.PathLike | None = None) -> dict[str, dict]:
    """``checkpoints/index.json`` as ``{name: {"folder", "task", "variant", "accuracy_500", ...}}``.

    A missing index is an empty zoo; a malformed one raises :class:`CheckpointError`.
    """
    root = Path(root) if root is not None else zoo_root()
    path = root / INDEX_FILE
    if not path.exists():
        return {}
    index = read_json(path, f"zoo index {path}")
    if not isinstance(index, dict) or not isinstance(index.get("models", {}), dict):
        raise CheckpointError(f"zoo index {path}: expected an object with a 'models' mapping")
    return index.get("models", {})


def resolve_checkpoint(path_or_name: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """A checkpoint folder from a path or a zoo name (``checkpoints/index.json``).

    Raises :class:`CheckpointNotFoundError` (a ``FileNotFoundError`` and a ``CheckpointError``)
    naming both interpretations when neither exists.
    """
    p = Path(path_or_name)
    if p.is_dir():
        return p
    if p.exists():
        raise CheckpointError(f"{p}: a checkpoint is a folder, got a file")
    root = Path(root) if root is not None else zoo_root()
    index = read_index(root)
    name = str(path_or_name)
    if name in index:
        entry = index[name]
        folder = entry.get("folder") if isinstance(entry, dict) else None
        if not isinstance(folder, str):
            raise CheckpointError(f"zoo index entry {name!r} has no 'folder'")
        full = root / folder
        if not full.is_dir():
            raise CheckpointNotFoundError(f"zoo model {name!r} points to {full}, which does not exist "
                                    "(rebuild with `python -m workbench zoo build`)")
        return full
    hint = f"; zoo names: {', '.join(sorted(index)[:5])}{', ...' if len(index) > 5 else ''}" \
        if index else " (the zoo index is empty)"
    raise CheckpointNotFoundError(f"no checkpoint folder or zoo model named {name!r}{hint}")


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------

def read_config(folder: str | os.PathLike) -> dict:
    """Read and validate ``config.json`` of a checkpoint folder (no model is built)."""
    folder = Path(folder)
    for fname in (CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE):
        if not (folder / fname).is_file():
            raise CheckpointError(f"checkpoint {folder} is missing {fname}")
    config = read_json(folder / CONFIG_FILE, f"{folder / CONFIG_FILE}")
    what = str(folder / CONFIG_FILE)
    if not isinstance(config, dict):
        raise CheckpointError(f"{what}: expected a JSON object")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{what}: 'format_version' missing or not an integer (got {version!r})")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{what}: format_version {version} is newer than this workbench supports "
            f"({FORMAT_VERSION}); upgrade the workbench")
    if version < 1:
        raise CheckpointError(f"{what}: invalid format_version {version}")
    for key, typ in (("model", dict), ("task", str)):
        if not isinstance(config.get(key), typ):
            raise CheckpointError(f"{what}: '{key}' missing or not a {typ.__name__}")
    variant = config["model"].get("variant")
    if variant not in KNOWN_VARIANTS:
        raise CheckpointError(
            f"{what}: unknown variant {variant!r}; accepted: {', '.join(KNOWN_VARIANTS)}")
    return config


def read_metrics(folder: str | os.PathLike) -> dict:
    """Read ``metrics.json`` of a checkpoint folder."""
    m = read_json(Path(folder) / METRICS_FILE, str(Path(folder) / METRICS_FILE))
    if not isinstance(m, dict):
        raise CheckpointError(f"{Path(folder) / METRICS_FILE}: expected a JSON object")
    return m


def load_checkpoint(path_or_name: str | os.PathLike, *, verify_hash: bool = True,
                    trust_unhashed: bool = False, root: str | os.PathLike | None = None):
    """Load a checkpoint folder or zoo model, validating everything.

    Parameters
    ----------
    path_or_name : a checkpoint folder, or a name listed in ``checkpoints/index.json``.
    verify_hash : compare ``model.safetensors`` with ``weights_sha256`` and ``config.json`` with
        ``config_sha256``. Turn off only for weights or configs edited on purpose.
    trust_unhashed : accept a checkpoint that lacks one of the two hashes (a hand-made folder);
        hashes that are present are still checked. Without it a missing hash is an error:
        deleting the hash must not switch the integrity check off.
    root : zoo folder for name resolution (default :func:`zoo_root`).

    Returns
    -------
    (model, task) : the model in eval mode and the task from its spec.

    Raises
    ------
    CheckpointNotFoundError (FileNotFoundError) : no such folder or zoo name.
    CheckpointError (ValueError) : missing files, malformed JSON, newer format, unknown variant,
        missing hash, task/config mismatch, sizes above the memory budget, truncated or garbled
        weights, missing/extra tensors, shape or dtype mismatch, non-finite weights, weights or
        config changed after saving.

    The weights' header is compared with the config before any model is built, so a config
    declaring a huge hidden size next to small weights is refused without allocating.
    """
    import torch

    folder = resolve_checkpoint(path_or_name, root)
    config = read_config(folder)
    read_metrics(folder)  # malformed metrics are an error too: the zoo tables read them
    what = str(folder / CONFIG_FILE)
    weights_path = folder / WEIGHTS_FILE
    hashes = _recorded_hashes(config, what, verify_hash and not trust_unhashed)

    task = task_of_config(config, what)

    from workbench.models import ModelConfig, build_model
    try:
        cfg = ModelConfig.from_dict(config["model"])
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{what}: bad model config: {e}") from None
    if cfg.d_vocab != task.d_vocab or cfg.n_classes != task.n_classes:
        raise CheckpointError(
            f"{what}: model config (d_vocab={cfg.d_vocab}, n_classes={cfg.n_classes}) does not fit "
            f"task {config['task']!r} (d_vocab={task.d_vocab}, n_classes={task.n_classes})")
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated
            meta_model = build_model(cfg)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{what}: model config cannot be built: {e}") from None
    wanted_meta = {k: (tuple(v.shape), v.dtype) for k, v in meta_model.state_dict().items()}
    header, _ = read_safetensors_header(weights_path, str(weights_path))
    # A model that converts an earlier tensor layout (upgrade_state_dict) may be given old names;
    # those are checked after the conversion below (its size is bounded by the memory budget).
    if getattr(meta_model, "upgrade_state_dict", None) is None or set(header) == set(wanted_meta):
        _check_header_fits(header, wanted_meta, cfg, weights_path)

    expected = hashes.get(WEIGHTS_HASH_KEY) if verify_hash else None
    tensors = load_tensors(weights_path, str(weights_path), expected)
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{weights_path}: tensor {name!r} has NaN/inf values")
    if verify_hash and CONFIG_HASH_KEY in hashes and config_sha256(config) != hashes[CONFIG_HASH_KEY]:
        raise CheckpointError(
            f"{what}: contents do not match the SHA-256 recorded in its '{CONFIG_HASH_KEY}' (the "
            "model config, task or another field was changed after saving); accepted: the file as "
            "saved, or load_checkpoint(..., verify_hash=False) for a deliberate edit")
    try:
        with torch.random.fork_rng(devices=[]):  # building draws an init we overwrite; keep caller's RNG
            model = build_model(cfg)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{what}: model config cannot be built: {e}") from None
    # A model whose tensor layout changed converts checkpoints of its earlier layout here
    # (the transformer baseline: nn.TransformerEncoderLayer names -> TransformerLens names).
    upgrade = getattr(model, "upgrade_state_dict", None)
    if upgrade is not None:
        tensors = upgrade(tensors)
    wanted = model.state_dict()
    missing = sorted(set(wanted) - set(tensors))
    extra = sorted(set(tensors) - set(wanted))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing}")
        if extra:
            parts.append(f"unexpected tensors {extra}")
        raise CheckpointError(
            f"{weights_path}: {'; '.join(parts)} for variant {cfg.variant!r} "
            f"(config.json and weights disagree)")
    for name, ref in wanted.items():
        t = tensors[name]
        if tuple(t.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{weights_path}: tensor {name!r} has shape {list(t.shape)} but the "
                f"config in config.json (variant={cfg.variant}, d_hidden={cfg.d_hidden}) needs "
                f"{list(ref.shape)}")
        if t.dtype != ref.dtype:
            raise CheckpointError(
                f"{weights_path}: tensor {name!r} has dtype {t.dtype}, model expects {ref.dtype}")
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return model, task


def _recorded_hashes(config: dict, what: str, required: bool) -> dict[str, str]:
    """The two hashes of ``config.json``, type-checked; a missing one is an error if ``required``."""
    out = {}
    for key in (WEIGHTS_HASH_KEY, CONFIG_HASH_KEY):
        v = config.get(key)
        if v is None:
            if required:
                raise CheckpointError(
                    f"{what}: no '{key}' (every checkpoint save_checkpoint writes has one, so a "
                    "missing hash means the file was edited or hand-made); accepted: a checkpoint "
                    "with its hashes, or --trust-unhashed (trust_unhashed=True) for a hand-made "
                    "folder you trust")
            continue
        if not isinstance(v, str) or len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
            raise CheckpointError(f"{what}: '{key}' is not a SHA-256 hex digest (got {v!r})")
        out[key] = v
    return out


def _check_header_fits(header: dict, wanted: dict, cfg, weights_path: Path) -> None:
    """Names, shapes and dtypes in the weights' header against the model the config builds."""
    missing = sorted(set(wanted) - set(header))
    extra = sorted(set(header) - set(wanted))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:10]}")
        if extra:
            parts.append(f"unexpected tensors {extra[:10]}")
        raise CheckpointError(
            f"{weights_path}: {'; '.join(parts)} for variant {cfg.variant!r} "
            f"(config.json and weights disagree)")
    for name, (shape, dtype) in wanted.items():
        info = header[name]
        if tuple(info["shape"]) != shape:
            raise CheckpointError(
                f"{weights_path}: tensor {name!r} has shape {info['shape']} but the "
                f"config in config.json (variant={cfg.variant}, d_hidden={cfg.d_hidden}) needs "
                f"{list(shape)}")
        want = _TORCH_TO_ST.get(str(dtype).replace("torch.", ""))
        if info["dtype"] != want:
            raise CheckpointError(
                f"{weights_path}: tensor {name!r} has dtype {info['dtype']}, model expects {want} ({dtype})")
