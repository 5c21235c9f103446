"""Write the workbench notebooks (``notebooks/*.ipynb``) from the cells below, optionally executed.

    python notebooks/make_notebooks.py            # write them without outputs
    python notebooks/make_notebooks.py --execute  # run each top to bottom (needs checkpoints/index.json)
                                                  # and store the outputs, images at low resolution

The notebooks hold no logic of their own: every cell calls ``workbench`` or ``analyses`` and
models are loaded by zoo name with ``workbench.load_checkpoint(name)``. Edit the cells here, not
the .ipynb files, so that the seven stay consistent.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SETUP = """\
import torch
torch.set_num_threads(1)
%matplotlib inline
import matplotlib
matplotlib.rcParams["figure.dpi"] = 60   # light outputs in the committed notebooks
import workbench"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}

NOTEBOOKS["01_quickstart"] = [
    ("md", "# Quickstart: load a zoo model, cache every step, intervene at one step\n\n"
           "A bilinear RNN updates its state as `h_t = A(x_t) h_{t-1}`: one matrix per token. "
           "Here we load the full model trained on `cyclic:5` (addition mod 5), check its accuracy "
           "far beyond the training lengths (2–10), look at its per-step states and change one of them."),
    ("code", SETUP),
    ("code", 'model, task = workbench.load_checkpoint("cyclic5_full_s0")\n'
             'print(task.spec, "| variant", model.cfg.variant, "| hidden", model.cfg.d_hidden)\n'
             'workbench.evaluate(model, task, [10, 100, 500], n_sequences=256)'),
    ("md", "`run_with_cache` keeps **every** step of the per-step hook `blocks.0.hook_state` "
           "(TransformerLens would keep only the last): `cache[...]` is `[batch, step, hidden]`, "
           "and index `t - 1` is the state after `t` tokens."),
    ("code", 'batch = task.eval_set(12, 4, seed=1)\n'
             'logits, cache = model.run_with_cache(batch.tokens, names_filter="blocks.0.hook_state")\n'
             'states = cache["blocks.0.hook_state"]\n'
             'print("states", tuple(states.shape))\n'
             'print("tokens     ", batch.tokens[0].tolist())\n'
             'print("labels     ", batch.labels[0].tolist())\n'
             'print("predictions", logits[0].argmax(-1).tolist())'),
    ("md", "**Intervene at one step.** The hook fires once per step; `hook.ctx[\"t\"]` is the step. "
           "We give sequence 0 the state sequence 1 had after 6 tokens. An edit of `hook_state` "
           "propagates: from step 6 on, sequence 0 continues from sequence 1's sum."),
    ("code", 'def transplant(h, hook):\n'
             '    if hook.ctx["t"] == 6:\n'
             '        h = h.clone()\n'
             '        h[0] = states[1, 5]\n'
             '    return h\n\n'
             'patched = model.run_with_hooks(batch.tokens, fwd_hooks=[("blocks.0.hook_state", transplant)])\n'
             'print("clean   ", logits[0].argmax(-1).tolist())\n'
             'print("patched ", patched[0].argmax(-1).tolist())'),
    ("md", "The same test over many sequence pairs is an analysis of its own: does the model "
           "continue from the transplanted state as the automaton would?"),
    ("code", 'from analyses.probing import state_transplant\n'
             'res = state_transplant(model, task, n_pairs=128, length=40, t_patch=20)\n'
             'print(f"follows the transplanted state: {res.match_b_continued:.3f}; "\n'
             '      f"follows its own labels: {res.match_a:.3f}; without the patch: {res.control_match_b_continued:.3f}")\n'
             'res.plot();'),
]

NOTEBOOKS["02_hooks_and_patching"] = [
    ("md", "# Hooks and activation patching\n\n"
           "Every model has the same hook vocabulary (README, *Hook points*). Which hook you edit "
           "matters in a recurrent model: `blocks.0.hook_state` feeds the next step, "
           "`blocks.0.hook_out` only the readout of its own step."),
    ("code", SETUP),
    ("code", 'model, task = workbench.load_checkpoint("modarith5_full_s0")\n'
             'for name, shape in model.hook_shapes(batch=2, length=7).items():\n'
             '    print(f"{name:<28} {shape}")'),
    ("md", "**Patching sweep.** Clean and corrupted sequences differ in one token 10 steps before "
           "the answer. We write the clean activation into the corrupted run at one (site, step) "
           "and measure how much of the clean−corrupted logit difference comes back, with bootstrap "
           "intervals over pairs."),
    ("code", 'from analyses.reporting.figures import Findings, Zoo, patching_map\n'
             'from analyses.reporting.figures.findings import patching_changed_step\n'
             'findings = Findings(Zoo.open())\n'
             'res = findings.patching("modarith5_full_s0")\n'
             'print(res.sentence(patching_changed_step(task)))\n'
             'patching_map(res);'),
    ("md", "The state carries the difference from the changed token to the answer; the readout "
           "site matters only at the answer step; the embedding only at the changed token itself."),
    ("md", "**Attribution patching.** The same map, estimated from one forward and one backward "
           "pass: `(clean - corrupted activation) . d(logit difference)/d(activation)` at every "
           "(site, step), the gradient taken on the corrupted run (backward hooks fire per step, "
           "`docs/gradients.md`). Solid: the estimate; dashed: activation patching of the same "
           "pairs. Sizes differ (a linear estimate of a large rotation of the state); the ranking "
           "is what the Spearman correlation measures."),
    ("code", 'from analyses.attribution import attribute_task\n'
             'attr = attribute_task(model, task, n_pairs=32, length=51, n_boot=200)\n'
             'print(attr.sentence())\n'
             'attr.plot();'),
    ("md", "**nnsight.** `nnsight.NNsight(model)` traces the model: `hook_state` fires once per "
           "step, so `tracer.iter[i]` is step i + 1. The states read in the trace are those "
           "`run_with_cache` returns (inside a trace the model runs its hooked loop, so they agree "
           "to float32 round-off)."),
    ("code", 'import nnsight\n'
             'tokens = task.eval_set(length=11, n_sequences=4).tokens\n'
             'nm = nnsight.NNsight(model)\n'
             'with nm.trace(tokens) as tracer:\n'
             '    states = nnsight.save([])\n'
             '    for _ in tracer.iter[0:tokens.shape[1]]:\n'
             '        states.append(nm.blocks[0].hook_state.output.save())\n'
             'traced = torch.stack(list(states), 1)\n'
             '_, cache = model.run_with_cache(tokens, names_filter="blocks.0.hook_state")\n'
             'gap = (traced - cache["blocks.0.hook_state"]).abs().max().item()\n'
             'print(tuple(traced.shape), f"max |traced - run_with_cache| = {gap:.1e} (float32 round-off)")'),
]

NOTEBOOKS["03_transition_spectra"] = [
    ("md", "# Transition spectra\n\n"
           "Per token, `A_v` divided by its spectral radius, restricted to the states reachable from "
           "`h_0`. A model that adds mod m exactly has eigenvalues on the unit circle at m-th roots of "
           "unity; a phase error ε per step reaches the decision boundary after about π/(m ε) steps."),
    ("code", SETUP),
    ("code", 'from analyses.reporting.figures import Findings, Zoo, spectra_panels, unit_circle_spectra\n'
             'findings = Findings(Zoo.open())\n'
             'panels = spectra_panels(findings, "cyclic:5")\n'
             'for title, res in panels:\n'
             '    print(title, "->", res.sentence())\n'
             'unit_circle_spectra(panels);'),
    ("md", "Does the spectrum predict where accuracy breaks? `break_prediction_check` compares the "
           "predicted break length with measured accuracy per length."),
    ("code", 'from analyses.spectral import break_prediction_check\n'
             'name = findings.zoo.pick("cyclic:5", "rotation") or "cyclic5_full_s0"\n'
             'model, task = workbench.load_checkpoint(name)\n'
             'print(name, break_prediction_check(model, task, lengths=(10, 50, 500), n_sequences=128))'),
]

NOTEBOOKS["04_group_representations"] = [
    ("md", "# Group representations learned on S3 and A5\n\n"
           "On a group word problem the learned matrices, restricted to the reachable states and with "
           "each token's scale removed, should form a representation of the group. Characters "
           "(traces) say which irreps it contains, independently of the basis."),
    ("code", SETUP),
    ("code", 'from analyses.groups.representations import recover_representation\n'
             'from analyses.reporting.figures import characters_vs_table, irrep_multiplicities\n'
             'model, task = workbench.load_checkpoint("groupS3_full_s0")\n'
             's3 = recover_representation(model, task)\n'
             'print(s3.sentence())\n'
             'characters_vs_table(s3);'),
    ("code", 'from analyses.plot.representations import plot_change_of_basis\n'
             'plot_change_of_basis(s3);'),
    ("code", 'model, task = workbench.load_checkpoint("groupA5_full_s0")\n'
             'a5 = recover_representation(model, task)\n'
             'print(a5.sentence())\n'
             'characters_vs_table(a5);\n'
             'irrep_multiplicities([("S3, full", s3), ("A5, full", a5)]);'),
    ("md", "## Approximately a representation: how long does it last?\n\n"
           "Trained models miss an exact representation by about 1e-2 (the sentences above say so). "
           "The cost shows in the states: those for one group element walk away from where they sat at "
           "short lengths. `analyses.drift` measures the walk and predicts the length at which it "
           "crosses half the distance to the nearest other state; the accuracy beside it is measured."),
    ("code", 'from analyses.drift import state_drift\n'
             'from analyses.plot.drift import plot_drift\n'
             'from workbench.training import evaluate\n'
             'drift = state_drift(model, task, max_length=2000)\n'
             'print(drift.sentence())\n'
             'print("measured accuracy:", evaluate(model, task, [500, 2000, 5000], n_sequences=128))\n'
             'plot_drift(drift, title="A5, full: state drift");'),
    ("md", "## Is the named representation the mechanism? Snap to it\n\n"
           "`analyses.groups.snapping` replaces the learned transitions, on the subspace the analysis uses, by "
           "the exact representation it names (same basis, same token scales, the model's own start "
           "state and readout) and measures accuracy again. If the snapped model holds at lengths "
           "where the learned one fails, the ~1e-2 deviation is what limits length generalisation."),
    ("code", 'from analyses.groups.snapping import snap_transitions\n'
             'snap = snap_transitions(model, task, lengths=(500, 2000, 5000), rep=a5)\n'
             'print(snap.sentence())'),
]

NOTEBOOKS["05_learned_vs_constructed"] = [
    ("md", "# Learned against constructed\n\n"
           "`workbench.constructions.construct(task, variant)` builds exact weights (the paper's FSM "
           "tensor, rotations, sign units). Is the trained model that construction up to a change of "
           "basis, a scale per token and per irreducible block? And does it behave the same when its "
           "transitions are swapped for the transported construction (a causal test at length 500)?"),
    ("code", SETUP),
    ("code", 'from analyses.groups.comparison import compare_models\n'
             'from analyses.reporting.figures import comparison_figure\n'
             'model, task = workbench.load_checkpoint("groupS3_full_s0")\n'
             'result = compare_models(model, task, n_sequences=32)\n'
             'print(result.sentence())\n'
             'comparison_figure(result);'),
    ("md", "Against the construction through the *learned* irreps instead of the FSM tensor "
           "(`comparison.summarize` builds it with `construct(task, \"full\", representation=...)`):"),
    ("code", 'from analyses.groups.comparison import summarize\n'
             'summary = summarize(model, task)\n'
             'print(summary["matched"]["sentence"] if "matched" in summary else "learned model is not faithful: no matched construction")'),
]

NOTEBOOKS["06_automaton_extraction"] = [
    ("md", "# Automaton extraction\n\n"
           "Cluster the normalized hidden states, read the transitions between clusters by majority "
           "vote, minimise, and compare with the task's minimal automaton. A model that generalises "
           "gives tight, well-separated clusters and an isomorphic machine."),
    ("code", SETUP),
    ("code", 'from analyses.automata_extraction import extract_automaton\n'
             'from analyses.reporting.figures import automaton_graph\n'
             'model, task = workbench.load_checkpoint("fsm5_full_s0")\n'
             'res = extract_automaton(model, task)\n'
             'print(res.sentence())\n'
             'automaton_graph(res, task);'),
    ("md", "A variant that cannot hold this machine (block size 2, if the zoo has it):"),
    ("code", 'from analyses.reporting.figures import Zoo\n'
             'name = Zoo.open().pick("fsm:5", "block2")\n'
             'if name is None:\n'
             '    print("no fsm:5 block2 model in this zoo")\n'
             'else:\n'
             '    model, task = workbench.load_checkpoint(name)\n'
             '    print(name, "->", extract_automaton(model, task).sentence())'),
]

NOTEBOOKS["07_hierarchy_table"] = [
    ("md", "# Reproducing the hierarchy table\n\n"
           "Chance-normalized accuracy at length 500, our zoo (median / best over seeds) beside the "
           "paper's numbers. The table comes from the checkpoints' `metrics.json` files: nothing is "
           "retrained here. Rebuild the zoo with `make zoo`."),
    ("code", SETUP),
    ("code", 'from IPython.display import Markdown\n'
             'from workbench import zoo as Z\n'
             'from analyses.reporting.figures import Zoo\n'
             'zoo = Zoo.open()\n'
             'print(len(zoo.rows), "runs in", zoo.root)\n'
             'Markdown(Z.reproduction_table(zoo.rows))'),
    ("code", 'from analyses.reporting.figures import FIGURES, Findings\n'
             'findings = Findings(zoo)\n'
             'FIGURES["hierarchy"].make(findings);'),
    ("code", 'FIGURES["accuracy_vs_length"].make(findings);'),
]


def build(name: str, cells):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                for kind, src in cells]
    return nb


def execute(nb, timeout: int = 300):
    """Run a notebook top to bottom in the repository root (nbclient, kernel python3)."""
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE.parent)}}).execute()
    return nb


def main(argv=None) -> int:
    import nbformat

    argv = sys.argv[1:] if argv is None else argv
    run = "--execute" in argv
    for name, cells in NOTEBOOKS.items():
        nb = build(name, cells)
        if run:
            execute(nb)
        nbformat.write(nb, HERE / f"{name}.ipynb")
        print(f"wrote notebooks/{name}.ipynb{' (executed)' if run else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
