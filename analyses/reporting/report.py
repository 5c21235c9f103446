"""The one-command report: ``python -m workbench report [--out reports/]`` -> ``reports/index.html``.

One self-contained HTML page (every figure embedded as a base64 PNG, no external link, script or
style) that answers, for the shipped zoo: does it reproduce the paper's table, and what did each
model learn? Sections, in order:

1. **Reproduction**: the hierarchy table (median / best over seeds, the paper's number in
   brackets) and its heatmap beside the paper's; the group tasks; the affine ablation.
2. One section per task family (cyclic, fsm, modarith, groups, parity), each finding stated in the
   sentence its analysis result produced, and its figures.

Every number comes from the zoo files (``workbench.zoo``) or an analysis module through
:class:`analyses.reporting.figures.findings.Findings`; this module lays them out. An analysis that fails is
shown as a failure in the page (and counted), never dropped. The page is written atomically.
"""
from __future__ import annotations

import base64
import html
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from workbench.variants import CYCLIC_FOCUS_KEYS, FSM_FOCUS_KEYS, GROUP_KEYS, PARITY_FOCUS_KEYS

FAMILIES = ("cyclic", "fsm", "modarith", "groups", "parity")


@dataclass
class Finding:
    """One sentence about one model (``model`` describes which run) or one failure."""
    model: str
    sentence: str
    failed: bool = False


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    blocks: list = field(default_factory=list)     # ("html", str) | ("finding", Finding) | ("figure", ...)

    def html(self, text: str):
        self.blocks.append(("html", text))

    def finding(self, f: Finding):
        self.blocks.append(("finding", f))

    def figure(self, fig_id: str, png: bytes, caption: str):
        self.blocks.append(("figure", fig_id, png, caption))


@dataclass
class ReportStats:
    """What :func:`build_report` did: figure and finding counts, failures, seconds taken."""
    figures: int = 0
    findings: int = 0
    failures: list = field(default_factory=list)
    seconds: float = 0.0



def _snapped_sentence(f, name: str) -> str:
    """The snap test in words; a model with no exact representation to snap to says why."""
    try:
        return f.snapped(name).sentence()
    except ValueError as exc:  # not a representation (no block-diagonal form): a finding, not a failure
        return f"not snapped: {exc}"

def _png(fig, dpi: int = 90) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _e(x) -> str:
    return html.escape(str(x), quote=True)


# ------------------------------------------------------------------------------------ tables

def _cell_colour(v: float | None) -> str:
    """Background from red (0) to green (1) for a chance-normalized accuracy."""
    if v is None:
        return "#f2f2f2"
    v = min(max(v, 0.0), 1.0)
    r, g = int(235 - 120 * v), int(140 + 90 * v)
    return f"rgb({r},{g},150)"


def reproduction_table_html(cells: dict, paper: dict, tasks, variants, caption: str) -> str:
    """HTML table: ``median / best (paper)`` per (variant, task), the statistics of results.md.

    Parameters
    ----------
    cells : {(variant_key, task): (median, best, n_seeds)}
    paper : {(variant_key, task): float}
    """
    head = "".join(f"<th>{_e(t)}</th>" for t in tasks)
    rows = []
    for v in variants:
        tds = []
        for t in tasks:
            ours = cells.get((v, t))
            p = paper.get((v, t))
            text = "—" if ours is None else f"{ours[0]:.2f} / {ours[1]:.2f}"
            if p is not None:
                text += f" <span class='paper'>({p:.2f})</span>"
            flag = ""
            if ours is not None and p is not None and abs(ours[1] - p) > 0.25:
                flag = " class='differs' title='best seed differs from the paper by more than 0.25'"
            tds.append(f"<td style='background:{_cell_colour(None if ours is None else ours[0])}'{flag}>{text}</td>")
        rows.append(f"<tr><th>{_e(v)}</th>{''.join(tds)}</tr>")
    return (f"<table class='repro'><caption>{_e(caption)}</caption><thead><tr><th>variant</th>{head}</tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table>")


def extended_table_html(rows: list[dict]) -> str:
    """HTML of ``workbench.zoo.extended_cell_stats``: per (task, variant) raw accuracy at 500 for
    the paper-protocol zoo and the extended recipe, and the extended recipe's at 10,000."""
    from workbench import zoo as Z

    L = Z.EXTENDED_LENGTHS[0]

    def cell(x):
        if x is None:
            return "<td>—</td>"
        return f"<td style='background:{_cell_colour(x[0])}'>{x[0]:.2f} / {x[1]:.2f}</td>"

    body = [f"<tr><th>{_e(c['task'])}</th><th>{_e(c['variant'])}</th>{cell(c['paper_500'])}"
            f"{cell(c['ext_500'])}{cell(c['ext_long'])}<td>{c['seeds']}</td></tr>"
            for c in Z.extended_cell_stats(rows, L)]
    return ("<table class='repro'><caption>raw final-step accuracy, median / best over seeds, as "
            f"learned</caption><thead><tr><th>task</th><th>variant</th><th>paper protocol: 500</th>"
            f"<th>{_e(Z.EXTENDED_RECIPE)}: 500</th><th>{_e(Z.EXTENDED_RECIPE)}: {L:,}</th><th>seeds</th>"
            f"</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _echo_table_html(experiments: list[dict]) -> str:
    keys = [("d_hidden", "H"), ("n_draws", "draws"), ("opposite_sign_rate", "opposite-sign rate"),
            ("predicted_rate", "paper 1 − 2^−H"), ("success_rate_odd", "solved, odd length"),
            ("success_rate_even", "solved, even length"), ("success_rate_both", "solved, both")]
    head = "".join(f"<th>{_e(lab)}</th>" for _, lab in keys)
    body = "".join("<tr>" + "".join(
        f"<td>{e[k]:.3g}</td>" if isinstance(e[k], float) else f"<td>{_e(e[k])}</td>" for k, _ in keys) + "</tr>"
        for e in sorted(experiments, key=lambda e: e["d_hidden"]))
    return f"<table class='plain'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ------------------------------------------------------------------------------------ sections

class _Builder:
    """Collects sections; every step is a closure so the progress bar can count them."""

    def __init__(self, findings):
        self.f = findings
        self.zoo = findings.zoo
        self.sections: dict[str, Section] = {}
        self.stats = ReportStats()
        self.steps: list[tuple[str, callable]] = []

    def section(self, id_, title, intro=""):
        self.sections[id_] = Section(id_, title, intro)
        self._current = id_
        return self.sections[id_]

    # one finding per (task, variant, analysis); failures are kept visible
    def add_finding(self, sec: Section, task: str, vkey: str, what: str, sentence_fn):
        name = self.zoo.pick(task, vkey)
        if name is None:
            return False
        try:
            text = sentence_fn(name)
            sec.finding(Finding(f"{self.zoo.describe(name)} — {what}", text))
            self.stats.findings += 1
        except Exception as exc:  # shown in the page and counted, so a broken analysis is seen
            msg = f"{type(exc).__name__}: {exc}"
            sec.finding(Finding(f"{self.zoo.describe(name)} — {what}", f"analysis failed: {msg}", failed=True))
            self.stats.failures.append(f"{name} {what}: {msg}")
        return True

    def add_figure(self, sec: Section, fig_id: str, caption: str, make):
        from analyses.reporting.figures import MissingModelError

        try:
            png = _png(make())
        except MissingModelError as exc:
            sec.html(f"<p class='missing'>Figure {_e(fig_id)} not drawn: {_e(exc)}</p>")
            return
        except Exception as exc:
            msg = f"{type(exc).__name__}: {exc}"
            sec.html(f"<p class='failed'>Figure {_e(fig_id)} failed: {_e(msg)}</p>")
            self.stats.failures.append(f"figure {fig_id}: {msg}")
            return
        sec.figure(fig_id, png, caption)
        self.stats.figures += 1

    def step(self, label, fn):
        """Queue a step; it belongs to the section created last (for ``families=``)."""
        self.steps.append((self._current, label, fn))


def _plan(b: _Builder):
    """Queue every step of the report (cheap table steps first)."""
    from analyses.reporting import figures as F
    from analyses.reporting.figures.findings import patching_changed_step
    from workbench import zoo as Z

    f, zoo = b.f, b.zoo
    cells = zoo.median_cells()

    # -------------------------------------------------------------- reproduction
    rep = b.section("reproduction", "Reproduction of the paper's table",
                    "Chance-normalized final-step accuracy at length 500 (0 = chance, 1 = perfect) on "
                    "512 test sequences, trained on lengths 2–10. Each cell: median / best over seeds, "
                    "the paper's number in brackets (its Mamba row is compared with "
                    "posdiag1/posdiag2). Red outline: the best seed differs from the paper by more than "
                    "0.25.")

    def repro():
        rep.html(reproduction_table_html(cells, Z.PAPER_RESULTS, Z._CYC + Z._FSM, Z.HIERARCHY_VARIANTS,
                                         "modular addition (cyclic:m; m = 2 is parity) and random FSMs"))
    b.step("reproduction table", repro)
    b.step("hierarchy heatmap", lambda: b.add_figure(rep, "hierarchy", F.FIGURES["hierarchy"].caption,
                                                      lambda: F.FIGURES["hierarchy"].make(f)))

    step_cells = zoo.median_cells("step_norm_500")

    def step_tables():
        # A model can be right at the final step of 500 and wrong at shorter lengths; scoring
        # every step 1-500 shows where that happened.
        if not step_cells:
            return
        rep.html("<p>The same, scored at <b>every step 1–500</b> of the test sequences "
                 "(<code>workbench.zoo.step_accuracy</code>). A model can be right at the final step of "
                 "length 500 and wrong at shorter lengths; where this table is lower than the one above, "
                 "that is what happened, and this one is the one to trust. Training validates every "
                 "step up to length 1,000 on other sequences, so it does not select for particular "
                 "lengths.</p>")
        rep.html(reproduction_table_html(step_cells, Z.PAPER_RESULTS, Z._CYC + Z._FSM,
                                         Z.HIERARCHY_VARIANTS, "every step 1–500: modular addition and random FSMs"))
        rep.html(reproduction_table_html(step_cells, Z.PAPER_RESULTS, Z.GROUP_TASKS, GROUP_KEYS,
                                         "every step 1–500: group word problems and modular arithmetic"))

    def groups_table():
        rep.html(reproduction_table_html(cells, Z.PAPER_RESULTS, Z.GROUP_TASKS, GROUP_KEYS,
                                         "group word problems and modular arithmetic"))
        rep.html(reproduction_table_html(cells, Z.PAPER_RESULTS, ("parity", "cyclic:5"), ("full_additive",),
                                         "affine ablation: full with the additive term B x + b"))
    b.step("group and ablation tables", groups_table)
    b.step("every-step tables", step_tables)

    # -------------------------------------------------------------- beyond the paper
    if zoo.extended_rows:
        L = Z.EXTENDED_LENGTHS[0]
        ext = b.section("beyond", f"Beyond the paper: length {L:,}",
                        f"The group and cyclic cells again, trained with the extended recipe "
                        f"<code>{_e(Z.EXTENDED_RECIPE)}</code>: a <code>{_e(Z.EXTENDED_PARENT_RECIPE)}</code> "
                        f"run (the paper's training data; early stop and the choice among learning-rate / "
                        f"weight-decay runs validate at length {L:,}), then the anchor phase (rollouts of "
                        f"100 steps that pull every state onto one point per automaton state), beside the "
                        f"paper-protocol zoo above. Raw accuracy, no snapping.")

        def beyond():
            every = zoo.rows + zoo.extended_rows + zoo.parent_rows
            ext.html(f"<p><b>{_e(Z.horizon_summary(every, L).sentence())}</b> Before the anchor phase: "
                     f"{_e(Z.horizon_summary(every, L, recipe=Z.EXTENDED_PARENT_RECIPE).sentence())}</p>")
            ext.html(extended_table_html(every))
        b.step("extended table", beyond)

    # -------------------------------------------------------------- cyclic
    cyc = b.section("cyclic", "Modular addition (cyclic:m)",
                    "Every variant's accuracy against length, then what the cyclic:5 models compute: the "
                    "eigenvalues of each token's normalized transition on the unit circle (a Z_m solution "
                    "has m-th roots of unity) and, for the group Z5, the representation the transitions form.")
    b.step("cyclic: accuracy against length", lambda: b.add_figure(
        cyc, "accuracy_cyclic", F.FIGURES["accuracy_vs_length"].caption,
        lambda: F.accuracy_vs_length(F.cells_by_length(zoo), Z._CYC, F.LENGTH_VARIANTS)))
    for v in F.SPECTRA_VARIANTS:
        b.step(f"cyclic:5 {v} spectra", lambda v=v: b.add_finding(
            cyc, "cyclic:5", v, "transition spectra", lambda n: f.spectra(n).sentence()))
    for v in CYCLIC_FOCUS_KEYS:
        b.step(f"cyclic:5 {v} representation", lambda v=v: b.add_finding(
            cyc, "cyclic:5", v, "representation of Z5", lambda n: f.representation(n).sentence()))
    b.step("cyclic spectra figure", lambda: b.add_figure(cyc, "spectra", F.FIGURES["spectra"].caption,
                                                         lambda: F.FIGURES["spectra"].make(f)))

    # -------------------------------------------------------------- fsm
    fsm = b.section("fsm", "Random finite-state machines (fsm:n)",
                    "Accuracy against length, and the automaton extracted from each model's hidden states "
                    "(clustered, majority-vote transitions, minimised) compared with the task's minimal automaton.")
    b.step("fsm: accuracy against length", lambda: b.add_figure(
        fsm, "accuracy_fsm", F.FIGURES["accuracy_vs_length"].caption,
        lambda: F.accuracy_vs_length(F.cells_by_length(zoo), Z._FSM, F.LENGTH_VARIANTS)))
    for task in ("fsm:5", "fsm:10"):
        for v in FSM_FOCUS_KEYS:
            b.step(f"{task} {v} automaton", lambda task=task, v=v: b.add_finding(
                fsm, task, v, "extracted automaton", lambda n: f.extraction(n).sentence()))
    b.step("fsm automaton figure", lambda: b.add_figure(fsm, "automaton_fsm", F.FIGURES["automaton_fsm"].caption,
                                                        lambda: F.FIGURES["automaton_fsm"].make(f)))

    # -------------------------------------------------------------- modarith
    mod = b.section("modarith", "Modular arithmetic (modarith:5)",
                    "Residues and operators with precedence: the extracted automaton, and activation patching "
                    "of clean into corrupted runs that differ in one token 10 steps before the answer.")
    for v in GROUP_KEYS:
        b.step(f"modarith {v} automaton", lambda v=v: b.add_finding(
            mod, "modarith:5", v, "extracted automaton", lambda n: f.extraction(n).sentence()))

    def mod_patch(n):
        _, task = zoo.load(n)
        return f.patching(n).sentence(patching_changed_step(task))
    b.step("modarith patching", lambda: b.add_finding(mod, "modarith:5", "full", "activation patching", mod_patch))
    b.step("modarith patching figure", lambda: b.add_figure(
        mod, "patching_modarith", F.FIGURES["patching_modarith"].caption,
        lambda: F.FIGURES["patching_modarith"].make(f)))
    b.step("modarith automaton figure", lambda: b.add_figure(
        mod, "automaton_modarith", F.FIGURES["automaton_modarith"].caption,
        lambda: F.FIGURES["automaton_modarith"].make(f)))

    # -------------------------------------------------------------- groups
    grp = b.section("groups", "Group word problems (S3, D4, A5)",
                    "Which representation the learned transitions form (restricted to the reachable "
                    "subspace, scale per token removed), and whether it is the hand-built construction up "
                    "to a change of basis and the commutant, with a causal swap test at length 500.")
    for task in Z.GROUP_TASKS:
        if not task.startswith("group:"):
            continue
        for v in GROUP_KEYS:
            b.step(f"{task} {v} representation", lambda task=task, v=v: b.add_finding(
                grp, task, v, "learned representation", lambda n: f.representation(n).sentence()))
            b.step(f"{task} {v} comparison", lambda task=task, v=v: b.add_finding(
                grp, task, v, "learned vs constructed", lambda n: f.comparison(n).sentence()))
            b.step(f"{task} {v} drift", lambda task=task, v=v: b.add_finding(
                grp, task, v, "state drift", lambda n: f.drift(n).sentence()))
            if v == "full":
                b.step(f"{task} {v} snapped", lambda task=task, v=v: b.add_finding(
                    grp, task, v, "snapped to exact", lambda n: _snapped_sentence(f, n)))
    for name in ("characters_S3", "characters_A5", "multiplicities", "comparison_S3", "drift"):
        b.step(f"{name} figure", lambda name=name: b.add_figure(
            grp, name, F.FIGURES[name].caption, lambda: F.FIGURES[name].make(f)))

    # -------------------------------------------------------------- parity
    par = b.section("parity", "Parity experiments",
                    "Parity is cyclic:2. A real diagonal (block size 1) solves it with one sign unit "
                    "(Prop. 3); frozen random real diagonals with a readout trained on two examples solve "
                    "it only in some draws; adding the affine term is the ablation.")
    for v in PARITY_FOCUS_KEYS:
        b.step(f"parity {v} spectra", lambda v=v: b.add_finding(
            par, "cyclic:2", v, "transition spectra", lambda n: f.spectra(n).sentence()))

    def echo():
        ex = [e for k, e in zoo.experiments.items() if k.startswith("echo_parity_H")]
        if ex:
            par.html(_echo_table_html(ex))
        b.add_figure(par, "echo_state", F.FIGURES["echo_state"].caption, lambda: F.FIGURES["echo_state"].make(f))
    b.step("echo-state parity", echo)

    def ablation():
        par.html(reproduction_table_html(cells, Z.PAPER_RESULTS, ("parity", "cyclic:5"),
                                         ("full_additive", "full"),
                                         "affine ablation against the linear model (cyclic:2 = parity)"))
    b.step("affine ablation", ablation)


# ------------------------------------------------------------------------------------ page

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
nav ul{columns:2}table{border-collapse:collapse;margin:1em 0;font-size:.8em}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:center}caption{font-weight:bold;text-align:left;padding:4px 0}
td.differs{outline:2px solid #c00;outline-offset:-2px}.paper{color:#555}
ul.findings li{margin:.4em 0}.model{font-weight:600}.failed{color:#b00}.missing{color:#777;font-style:italic}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#444}code{background:#f4f4f4;padding:0 3px}
"""


def render_html(sections: list[Section], header: str, footer: str) -> str:
    """The page: a table of contents linking every section and figure, then the sections."""
    toc = []
    for s in sections:
        figs = [b for b in s.blocks if b[0] == "figure"]
        sub = "".join(f"<li><a href='#fig-{_e(b[1])}'>{_e(b[1])}</a></li>" for b in figs)
        toc.append(f"<li><a href='#{_e(s.id)}'>{_e(s.title)}</a>{f'<ul>{sub}</ul>' if sub else ''}</li>")
    body = []
    for s in sections:
        body.append(f"<section id='{_e(s.id)}'><h2>{_e(s.title)}</h2>")
        if s.intro:
            body.append(f"<p>{_e(s.intro)}</p>")
        items: list[str] = []

        def flush(items: list[str] = items):   # bound now: one list per section
            if items:
                body.append("<ul class='findings'>" + "".join(items) + "</ul>")
                items.clear()
        for blk in s.blocks:
            if blk[0] == "finding":
                fd = blk[1]
                cls = " class='failed'" if fd.failed else ""
                items.append(f"<li{cls}><span class='model'>{_e(fd.model)}</span>: {_e(fd.sentence)}</li>")
                continue
            flush()
            if blk[0] == "html":
                body.append(blk[1])
            else:
                _, fid, png, cap = blk
                data = base64.b64encode(png).decode("ascii")
                body.append(f"<figure id='fig-{_e(fid)}'><img src='data:image/png;base64,{data}' "
                            f"alt='{_e(fid)}'><figcaption><b>{_e(fid)}</b>: {_e(cap)}</figcaption></figure>")
        if not any(b[0] == "finding" for b in s.blocks) and not any(b[0] == "figure" for b in s.blocks):
            body.append("<p class='missing'>No model of this family in the zoo.</p>")
        flush()
        body.append("</section>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>Bilinear RNN workbench report</title><style>{_CSS}</style></head><body>"
            f"<h1 id='top'>Bilinear RNN workbench: what the zoo learned</h1>{header}"
            f"<nav><h2>Contents</h2><ul>{''.join(toc)}</ul></nav>{''.join(body)}"
            f"<footer><p>{footer} <a href='#top'>Back to top</a></p></footer></body></html>")


def build_report(out_dir="reports/", zoo_dir=None, progress: bool = True, families=None) -> Path:
    """Build ``<out_dir>/index.html`` from a zoo; returns its path.

    Parameters
    ----------
    out_dir : folder to write ``index.html`` into (created).
    zoo_dir : zoo folder with ``index.json`` (default ``workbench.checkpoints.zoo_root()``,
        i.e. ``checkpoints/`` or ``$WORKBENCH_CHECKPOINTS``).
    progress : show a tqdm bar over the report's steps.
    families : subset of ``FAMILIES`` (default all); the reproduction section is always built.

    Raises
    ------
    analyses.reporting.figures.ZooNotFoundError (a FileNotFoundError) : no ``index.json``; the message says
        how to build the zoo.
    ValueError : unknown family.
    """
    import matplotlib

    matplotlib.use("Agg")
    import torch
    from tqdm.auto import tqdm

    from analyses.reporting.figures import Findings, Zoo

    fams = FAMILIES if families is None else tuple(families)
    bad = [x for x in fams if x not in FAMILIES]
    if bad:
        raise ValueError(f"unknown report famil{'y' if len(bad) == 1 else 'ies'} {bad}; accepted: {list(FAMILIES)}")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    zoo = Zoo.open(zoo_dir)
    b = _Builder(Findings(zoo))
    _plan(b)
    keep = {"reproduction", *fams}
    # a step belongs to the section it writes into; drop steps of families not asked for
    steps = [(lab, fn) for sec, lab, fn in b.steps if sec in keep]
    bar = tqdm(steps, desc="report", unit="step", disable=not progress, leave=True)
    for label, fn in bar:
        bar.set_postfix_str(label[:40], refresh=False)
        fn()
    sections = [b.sections[k] for k in ("reproduction",) + FAMILIES if k in keep]
    b.stats.seconds = time.perf_counter() - t0
    from workbench import __version__

    header = (f"<p>Zoo: <code>{_e(zoo.root)}</code>, {len(zoo.rows)} trained runs, "
              f"{len(zoo.experiments)} experiment files. Built with workbench {_e(__version__)} on "
              f"{_e(time.strftime('%Y-%m-%d %H:%M'))} in {b.stats.seconds:.0f} s "
              f"({b.stats.findings} findings, {b.stats.figures} figures"
              f"{', ' + str(len(b.stats.failures)) + ' failed analyses' if b.stats.failures else ''}). "
              "Where a figure or finding stands for a (task, variant) cell, the run shown is the best seed "
              "by accuracy at length 500, and the text says which.</p>")
    footer = ("Regenerate with <code>python -m workbench report --out reports/</code>; figures alone with "
              "<code>python -m analyses.reporting.figures all --out figures/</code>.")
    page = render_html(sections, header, footer)
    from workbench.checkpoints import atomic_write_bytes

    out = Path(out_dir) / "index.html"
    atomic_write_bytes(out, page.encode("utf-8"))
    os.chmod(out, 0o644)  # the temporary file of the atomic write is private; the page is not
    build_report.last_stats = b.stats
    if b.stats.failures and progress:
        print(f"{len(b.stats.failures)} analyses failed (shown in the page):")
        for msg in b.stats.failures:
            print(f"  {msg}")
    return out


# ------------------------------------------------------------------------------------ checks

def check_page(text: str) -> list[str]:
    """Structural problems of a report page (empty list = none); no browser needed.

    Checks that every ``<img>`` is an embedded ``data:image/png;base64`` URI that decodes to a PNG
    with a non-zero size, that every ``href="#id"`` has a target ``id``, and that the page needs
    nothing from outside (no external ``src``/``href``, scripts or style sheets).
    """
    import binascii
    import struct
    from html.parser import HTMLParser

    ids, hrefs, imgs, problems = set(), [], [], []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if "id" in a:
                if a["id"] in ids:
                    problems.append(f"duplicate id {a['id']!r}")
                ids.add(a["id"])
            if tag == "a" and "href" in a:
                hrefs.append(a["href"])
            if tag == "img":
                imgs.append(a.get("src", ""))
            if tag in ("script", "link", "iframe") or (tag != "img" and "src" in a):
                problems.append(f"external resource or script: <{tag} {a}>")

    P().feed(text)
    prefix = "data:image/png;base64,"
    for i, src in enumerate(imgs):
        if not src.startswith(prefix):
            problems.append(f"image {i} is not an embedded PNG: {src[:60]!r}")
            continue
        try:
            data = base64.b64decode(src[len(prefix):], validate=True)
        except (binascii.Error, ValueError) as e:
            problems.append(f"image {i}: bad base64 ({e})")
            continue
        if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
            problems.append(f"image {i}: not a PNG")
            continue
        w, h = struct.unpack(">II", data[16:24])
        if w == 0 or h == 0:
            problems.append(f"image {i}: empty ({w}x{h})")
    for h in hrefs:
        if not h.startswith("#"):
            problems.append(f"link leaves the page: {h!r}")
        elif h[1:] not in ids:
            problems.append(f"broken anchor {h!r}")
    return problems
