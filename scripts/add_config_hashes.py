"""One-off migration: add ``config_sha256`` to checkpoints written before it existed.

For each checkpoint folder under the given roots (default ``checkpoints/zoo``) this checks that
``model.safetensors`` still matches the recorded ``weights_sha256`` (a folder whose weights do not
match is reported and left alone: hashing it would bless a corrupted file), then adds the hash of
the rest of ``config.json`` and rewrites only that file, atomically. The weights are never
touched. Folders that already carry ``config_sha256`` are verified instead.

    python scripts/add_config_hashes.py [ROOT ...] [--check]

``--check`` changes nothing and exits 1 if any folder lacks a valid hash.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workbench.checkpoints import (
    CONFIG_FILE, CONFIG_HASH_KEY, WEIGHTS_FILE, WEIGHTS_HASH_KEY, atomic_write_json, config_sha256,
    sha256_bytes,
)


def migrate(folder: Path, check: bool) -> str:
    config = json.loads((folder / CONFIG_FILE).read_text())
    recorded = config.get(WEIGHTS_HASH_KEY)
    if recorded is None or sha256_bytes((folder / WEIGHTS_FILE).read_bytes()) != recorded:
        return "weights do not match weights_sha256: left alone"
    if CONFIG_HASH_KEY in config:
        return "ok" if config[CONFIG_HASH_KEY] == config_sha256(config) else "config_sha256 mismatch"
    if check:
        return "missing config_sha256"
    config[CONFIG_HASH_KEY] = config_sha256(config)
    atomic_write_json(folder / CONFIG_FILE, config)
    return "added"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("roots", nargs="*", default=[str(Path(__file__).resolve().parents[1] / "checkpoints" / "zoo")])
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    counts: dict[str, int] = {}
    bad = 0
    for root in args.roots:
        for cfg in sorted(Path(root).glob(f"*/{CONFIG_FILE}")):
            status = migrate(cfg.parent, args.check)
            counts[status] = counts.get(status, 0) + 1
            if status not in ("ok", "added"):
                bad += 1
                print(f"{cfg.parent}: {status}")
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no checkpoints found")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
