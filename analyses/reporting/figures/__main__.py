"""``python -m analyses.reporting.figures NAME|all [NAME ...] --out DIR [--zoo DIR]``: write PNG and PDF.

Exit codes: 0 all requested figures written; 1 some could not be made (``all`` skips figures
whose models the zoo lacks and says how to train them); 2 bad usage (unknown name, no zoo index),
one line on stderr, no traceback.
"""
from __future__ import annotations

import argparse
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def main(argv=None) -> int:
    from analyses.reporting.figures import FIGURES

    p = _Parser(prog="python -m analyses.reporting.figures",
                description="Write workbench figures (PNG and PDF) from the zoo. Figures: "
                + ", ".join(FIGURES) + ".")
    p.add_argument("names", nargs="+", metavar="NAME", help="figure name(s), or 'all'")
    p.add_argument("--out", default="figures/", help="output folder (default figures/)")
    p.add_argument("--zoo", default=None, help="zoo folder with index.json (default: checkpoints/)")
    p.add_argument("--dpi", type=int, default=120)
    p.add_argument("--list", action="store_true", help="print the figure names and captions, then exit")
    args = p.parse_args(argv)
    if args.list:
        for s in FIGURES.values():
            print(f"{s.name:<20} {s.caption}")
        return 0
    names = list(FIGURES) if args.names == ["all"] else args.names
    bad = [n for n in names if n not in FIGURES]
    if bad or ("all" in names):
        p.error(f"unknown figure name(s) {', '.join(repr(b) for b in bad or ['all'])}; accepted: all (alone) "
                f"or any of {', '.join(FIGURES)}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    torch.set_num_threads(1)
    from analyses.reporting.figures import Findings, MissingModelError, Zoo, ZooNotFoundError, save_figure

    try:
        findings = Findings(Zoo.open(args.zoo))
    except (ZooNotFoundError, ValueError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    failed = 0
    for n in names:
        try:
            fig = FIGURES[n].make(findings)
        except MissingModelError as e:
            failed += 1
            sys.stderr.write(f"skipped {n}: {e}\n")
            continue
        paths = save_figure(fig, args.out, n, dpi=args.dpi)
        plt.close(fig)
        print(" ".join(str(x) for x in paths))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
