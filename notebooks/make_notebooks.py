"""Write the workbench notebooks (``notebooks/*.ipynb``) from the cells below, optionally executed.

    python notebooks/make_notebooks.py            # write them without outputs
    python notebooks/make_notebooks.py --execute  # run each top to bottom (needs checkpoints/index.json)
                                                  # and store the outputs, images at low resolution
    python notebooks/make_notebooks.py --execute 03_hierarchy_explained   # only the ones named
    python notebooks/make_notebooks.py --execute --out DIR                # write to DIR (the tests)

Each notebook is one question -> method -> evidence -> answer: the question in its first cell, its
last code cell sets ``ANSWER`` (a JSON-safe dict computed in the notebook) and prints it as one
JSON line, which ``tests/test_notebooks.py`` parses and checks. "Try it" cells end with an
``assert`` on the reader's answer. The notebooks hold no logic of their own: every cell calls
``workbench`` or ``analyses``. Edit the cells here, not the .ipynb files.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SETUP = """\
import json
import torch
torch.set_num_threads(1)
%matplotlib inline
import matplotlib
matplotlib.rcParams["figure.dpi"] = 60   # light outputs in the committed notebooks
import workbench"""


def answer(expr: str) -> str:
    """The last cell of every notebook: ANSWER, printed as one JSON line the test suite parses."""
    return f"ANSWER = {expr}\nprint(json.dumps(ANSWER))"


NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}

NOTEBOOKS["01_quickstart"] = [
    ("md", "# Quickstart\n\n"
           "**Question.** A bilinear RNN (`h_t = A(x_t) h_{t-1}`, one matrix per token) trained on sums "
           "mod 5 over sequences of 2–10 tokens: does it still add correctly after 500 tokens, and is "
           "its hidden state *the* sum, i.e. does the model continue from a state we write into it?\n\n"
           "**Method.** Load a zoo model, evaluate far beyond the training length, cache every step, "
           "edit one step."),
    ("code", SETUP),
    ("code", 'model, task = workbench.load_checkpoint("cyclic5_full_s0")\n'
             'print(task.spec, "| variant", model.cfg.variant, "| hidden", model.cfg.d_hidden, "| chance", task.chance)\n'
             'accuracy = workbench.evaluate(model, task, [10, 100, 500], n_sequences=256)\n'
             'accuracy'),
    ("md", "Accuracy at the last step stays at 1 fifty times past the longest training sequence. "
           "`run_with_cache` keeps **every** step of the per-step hook `blocks.0.hook_state` "
           "(TransformerLens would keep only the last): `cache[...]` is `[batch, step, hidden]`, "
           "and index `t - 1` is the state after `t` tokens."),
    ("code", 'batch = task.eval_set(12, 4, seed=1)\n'
             'logits, cache = model.run_with_cache(batch.tokens, names_filter="blocks.0.hook_state")\n'
             'states = cache["blocks.0.hook_state"]\n'
             'print("states", tuple(states.shape))\n'
             'print("tokens     ", batch.tokens[0].tolist())\n'
             'print("labels     ", batch.labels[0].tolist())\n'
             'print("predictions", logits[0].argmax(-1).tolist())'),
    ("md", "**Try it.** How many states does the cache hold per sequence? Put your answer in "
           "`my_answer` and run the cell: the assert checks it."),
    ("code", 'my_answer = 12   # try it: the number of cached steps per sequence\n'
             'assert my_answer == states.shape[1], f"not quite: the cache has one state per token, {states.shape[1]}"\n'
             'print("right: one state per token")'),
    ("md", "**Intervene at one step.** The hook fires once per step and `hook.ctx[\"t\"]` is the "
           "step. We give sequence 0 the state sequence 1 had after 6 tokens. An edit of "
           "`hook_state` propagates: from step 6 on, sequence 0 continues from sequence 1's sum. "
           "(The hook function is the one piece of code a reader writes: it *is* the intervention.)"),
    ("code", 'def transplant(h, hook):\n'
             '    if hook.ctx["t"] == 6:\n'
             '        h = h.clone()\n'
             '        h[0] = states[1, 5]\n'
             '    return h\n\n'
             'patched = model.run_with_hooks(batch.tokens, fwd_hooks=[("blocks.0.hook_state", transplant)])\n'
             'print("clean   ", logits[0].argmax(-1).tolist())\n'
             'print("patched ", patched[0].argmax(-1).tolist())'),
    ("md", "Over 128 pairs of sequences this is an analysis of its own: after the transplant, does "
           "the model follow the automaton from the transplanted state (the other sequence's sum "
           "plus the tokens still to come)? The control is the same comparison without the patch."),
    ("code", 'from analyses import state_transplant\n'
             'res = state_transplant(model, task, n_pairs=128, length=40, t_patch=20)\n'
             'print(res.sentence())\n'
             'res.plot();'),
    ("md", "**Answer.** The model is still right at length 500, and it continues from any state "
           "we give it as the automaton would: the state is the running sum."),
    ("code", answer('{"accuracy_500": accuracy[500], "follows_transplant": res.match_b_continued,\n'
                    '          "control": res.control_match_b_continued}')),
]

NOTEBOOKS["02_hooks_and_patching"] = [
    ("md", "# Hooks, activation patching and attribution patching\n\n"
           "**Question.** On modular arithmetic (`modarith:5`, tokens `a + b * c ... =`), where does "
           "the information that decides the answer travel, site by site and step by step? And can a "
           "gradient (attribution patching: one forward, one backward pass) find the same map as "
           "activation patching (one forward pass per cell)?"),
    ("code", SETUP),
    ("code", 'model, task = workbench.load_checkpoint("modarith5_full_s0")\n'
             'for name, shape in model.hook_shapes(batch=2, length=7).items():\n'
             '    print(f"{name:<28} {shape}")'),
    ("md", "Which hook you edit matters in a recurrent model: `blocks.0.hook_state` feeds the next "
           "step, `blocks.0.hook_out` only the readout of its own step.\n\n"
           "**Activation patching.** Clean and corrupted sequences differ in one token 10 steps "
           "before the answer. We write the clean activation into the corrupted run at one "
           "(site, step) and measure how much of the clean − corrupted logit difference comes "
           "back, with bootstrap intervals over pairs."),
    ("code", 'from analyses import attribute_task\n'
             'attr = attribute_task(model, task, n_pairs=32, length=51, n_boot=200)\n'
             'patch = attr.patching\n'
             'print(patch.sentence())\n'
             'patch.plot();'),
    ("md", "The state carries the difference from the changed token to the answer; the readout "
           "site matters only at the answer step; the embedding only at the changed token itself.\n\n"
           "**Try it.** At which site is the recovered fraction largest at the step just before the "
           "answer? (One of `patch.sites`.)"),
    ("code", 'print(patch.sites)\n'
             'my_answer = "blocks.0.hook_state"   # try it\n'
             'best = patch.sites[int(patch.recovery[:, -2].argmax())]\n'
             'assert my_answer == best, f"look again: the largest recovery before the answer is at {best}"\n'
             'print("right:", best, "carries the answer forward")'),
    ("md", "**Attribution patching** estimates the same map from one forward and one backward pass: "
           "`(clean − corrupted activation) · d(logit difference)/d(activation)` at every "
           "(site, step), the gradient taken on the corrupted run (backward hooks fire per step, "
           "`docs/gradients.md`). Solid: the estimate; dashed: activation patching of the same "
           "pairs. Sizes differ (a linear estimate of a large rotation of the state); the ranking "
           "is what the Spearman correlation measures."),
    ("code", 'print(attr.sentence())\n'
             'attr.plot();'),
    ("md", "**Answer.** Patching puts the decisive information in the recurrent state between the "
           "changed token and the answer; attribution patching ranks the (site, step) cells the same "
           "way (Spearman correlation below), at the cost of two passes instead of one per cell."),
    ("code", answer('{"spearman": attr.spearman, "max_abs_error": attr.max_abs_error,\n'
                    '          "state_recovery_before_answer": float(patch.recovery[patch.sites.index("blocks.0.hook_state"), -2])}')),
]

NOTEBOOKS["03_hierarchy_explained"] = [
    ("md", "# The hierarchy, explained by spectra and commutators\n\n"
           "**Question.** Why do diagonal models fail on non-abelian automata, why does the real "
           "diagonal only do parity, why does the Mamba-like (positive, decaying) diagonal forget, "
           "and where does the rotation model fail?\n\n"
           "**Method.** Per token, `A_v` divided by its spectral radius, restricted to the states "
           "reachable from `h_0`. Commutators `[A_u, A_v]` measure how far the matrices are from a "
           "commuting (abelian) family; eigenvalues on the unit circle at m-th roots of unity are "
           "what exact addition mod m needs."),
    ("code", SETUP),
    ("code", 'from analyses import spectra\n'
             'from analyses.reporting.figures import Findings, Zoo, spectra_panels, unit_circle_spectra\n'
             'zoo = Zoo.open()\n'
             'panels = spectra_panels(Findings(zoo), "cyclic:5")\n'
             'for title, res in panels:\n'
             '    print(f"{title:<14}", res.sentence())\n'
             'unit_circle_spectra(panels);'),
    ("md", "**Diagonal means abelian.** Diagonal matrices commute, so a diagonal model can only "
           "realise automata whose token actions commute. `fsm:5` has non-commuting tokens: the "
           "full model's matrices do not commute, a diagonal model's cannot help commuting."),
    ("code", 'full_fsm = spectra(*workbench.load_checkpoint(zoo.pick("fsm:5", "full")))\n'
             'diag_fsm = spectra(*workbench.load_checkpoint(zoo.pick("fsm:5", "complex_diag")))\n'
             'print("full         max commutator", full_fsm.max_commutator)\n'
             'print("complex_diag max commutator", diag_fsm.max_commutator)\n'
             'print("fsm:5 normalized accuracy at 500 (full, complex_diag):",\n'
             '      zoo.row(zoo.pick("fsm:5", "full"))["norm_500"], zoo.row(zoo.pick("fsm:5", "complex_diag"))["norm_500"])'),
    ("md", "**The real diagonal only does parity.** A real number of modulus 1 is ±1: the only "
           "root of unity a real diagonal entry can hold has order 2. So `block1` (real diagonal) can "
           "count mod 2 and nothing else; its eigenvalues on `cyclic:3` are real, never at the cube "
           "roots of unity."),
    ("code", 'import numpy as np\n'
             'real3 = spectra(*workbench.load_checkpoint(zoo.pick("cyclic:3", "block1")))\n'
             'print("largest |imaginary part| of a real-diagonal eigenvalue:", float(np.abs(real3.eigenvalues.imag).max()))\n'
             'print("normalized accuracy at 500: cyclic:2", zoo.row(zoo.pick("cyclic:2", "block1"))["norm_500"],\n'
             '      "| cyclic:3", zoo.row(zoo.pick("cyclic:3", "block1"))["norm_500"])'),
    ("md", "**The Mamba-like decay forgets.** `positive_diag` gates are sigmoids: entries in (0, 1). "
           "Any direction whose entry is below the largest shrinks geometrically; the decay length "
           "is how many steps until it has shrunk by the decay tolerance. Information stored there "
           "is gone long before step 500."),
    ("code", 'mamba = spectra(*workbench.load_checkpoint(zoo.pick("cyclic:5", "posdiag1")))\n'
             'print(mamba.notes)\n'
             'print("decay length per token (steps):", np.round(mamba.token_decay_length, 1))\n'
             'print("normalized accuracy at 500:", zoo.row(zoo.pick("cyclic:5", "posdiag1"))["norm_500"])'),
    ("md", "**Try it.** Is the longest decay length of the Mamba-like model shorter than 500 steps?"),
    ("code", 'my_answer = True   # try it\n'
             'assert my_answer == bool(np.max(mamba.token_decay_length) < 500), "look at the decay lengths again"\n'
             'print("right: every direction has decayed before step 500")'),
    ("md", "**Where rotation fails.** A rotation model holds phases: exact addition mod m needs its "
           "angles at multiples of 2π/m, and a phase error ε per step crosses the decision boundary "
           "after about π/(m ε) steps. In this zoo the rotation models of parity (`cyclic:2`) and "
           "`cyclic:25` hold their phases to ~1e-3 rad or better. What no rotation can do is merge "
           "two states: rotations are invertible. A random automaton has letters that send "
           "two states to one (`fsm:2`: letter 0 sends both states to state 1), and there the "
           "rotation model is no better than chance."),
    ("code", 'rot = {}\n'
             'for spec in ("cyclic:2", "cyclic:25"):\n'
             '    rot_model, rot_task = workbench.load_checkpoint(zoo.pick(spec, "rotation"))\n'
             '    rot[spec] = spectra(rot_model, rot_task)\n'
             '    print(f"{spec:<10} max phase error {rot[spec].max_phase_error:.3g} rad;",\n'
             '          "accuracy by length", workbench.evaluate(rot_model, rot_task, [10, 11, 100, 500], n_sequences=128))\n'
             'fsm_rot, fsm_task = workbench.load_checkpoint(zoo.pick("fsm:2", "rotation"))\n'
             'print("fsm:2 transitions (rows: states, columns: letters):", fsm_task.automaton.transitions.tolist())\n'
             'fsm_rot_500 = workbench.training.normalized_accuracy(\n'
             '    workbench.evaluate(fsm_rot, fsm_task, [500], n_sequences=256)[500], fsm_task.chance)\n'
             'print(f"rotation on fsm:2: normalized accuracy at 500 = {fsm_rot_500:.2f}")\n'
             'rot["cyclic:25"].plot();'),
    ("md", "**Answer.** Commuting matrices (diagonal: commutator 0) cannot hold a non-abelian "
           "machine; a real unit eigenvalue is ±1, hence parity only; positive gates below 1 decay "
           "within a few hundred steps; the rotation model holds every cyclic group whose phases it "
           "learned (errors ~1e-3 rad or less) and fails where the machine merges states, which no "
           "invertible matrix can do."),
    ("code", answer('{"full_fsm_commutator": full_fsm.max_commutator, "diag_fsm_commutator": diag_fsm.max_commutator,\n'
                    '          "real_diag_max_imag": float(np.abs(real3.eigenvalues.imag).max()),\n'
                    '          "mamba_longest_decay": float(np.max(mamba.token_decay_length)),\n'
                    '          "rotation_phase_error": {spec: r.max_phase_error for spec, r in rot.items()},\n'
                    '          "rotation_fsm2_normalized_500": fsm_rot_500}')),
]

NOTEBOOKS["04_group_representations"] = [
    ("md", "# Group representations: S3, A4, A5 and Q8\n\n"
           "**Question.** On a group word problem, do the learned matrices form a representation of "
           "the group, and which irreducible representations does it contain? For Q8, whose 2-dimensional "
           "irrep is quaternionic, what does a real model hold?\n\n"
           "**Method.** Restrict the matrices to the states the model visits, remove each token's "
           "scale, and read characters (traces): they name the irreps independently of the basis."),
    ("code", SETUP),
    ("code", 'from analyses import recover_representation\n'
             'from analyses.reporting.figures import characters_vs_table, irrep_multiplicities\n'
             'model, task = workbench.load_checkpoint("groupS3_full_s0")\n'
             's3 = recover_representation(model, task)\n'
             'print(s3.sentence())\n'
             'characters_vs_table(s3);'),
    ("md", "The trained S3 model holds the 2-dimensional irrep: the smallest faithful one. A5, the "
           "smallest non-solvable group (60 elements), from the zoo:"),
    ("code", 'a5_model, a5_task = workbench.load_checkpoint("groupA5_full_s0")\n'
             'a5 = recover_representation(a5_model, a5_task)\n'
             'print(a5.sentence())'),
    ("md", "The zoo has no A4 or Q8 model, so we take the exact constructions "
           "(`workbench.constructions.construct`, regular representation) through the same analysis: "
           "the regular representation contains each irrep as often as its dimension. Q8's "
           "2-dimensional irrep is quaternionic (Frobenius–Schur indicator −1): it has no real form "
           "of its own size, so a real model holds it an even number of times, two complex copies "
           "making one real irreducible block of dimension 4, and the analysis keeps that block "
           "in complex form (`real_form` False)."),
    ("code", 'from workbench.constructions import construct\n'
             'from workbench.tasks import make_task\n'
             'a4_task, q8_task = make_task("group:A4"), make_task("group:Q8")\n'
             'a4 = recover_representation(construct(a4_task, "full", representation="regular"), a4_task)\n'
             'q8 = recover_representation(construct(q8_task, "full", representation="regular"), q8_task)\n'
             'print("A4:", a4.sentence())\n'
             'print("Q8:", q8.sentence())\n'
             'for block in q8.blocks:\n'
             '    print(f"  Q8 block {block.name} copy {block.copy}: dimension {block.dim}, real form {block.real_form}")\n'
             'irrep_multiplicities([("S3, trained", s3), ("A5, trained", a5), ("A4, regular", a4), ("Q8, regular", q8)]);'),
    ("md", "**Try it.** What is the Frobenius–Schur indicator of Q8's 2-dimensional irrep (+1 real, "
           "0 complex, −1 quaternionic)?"),
    ("code", 'my_answer = -1   # try it\n'
             'fs = dict(zip(q8.irrep_names, q8.frobenius_schur.tolist()))\n'
             'print(fs)\n'
             'assert my_answer == fs["2a"], f"not quite: {fs}"\n'
             'print("right: quaternionic, so over the reals it needs 4 dimensions")'),
    ("md", "**Answer.** Trained S3 and A5 models hold (approximately) faithful representations "
           "named by their characters; the constructions show the regular representation's "
           "multiplicities, and Q8's quaternionic irrep twice (4 real dimensions), in complex form."),
    ("code", answer('{"S3": s3.decomposition_string(), "S3_faithful": bool(s3.faithful), "A5": a5.decomposition_string(),\n'
                    '          "A5_faithful": bool(a5.faithful), "A4": a4.decomposition_string(), "Q8": q8.decomposition_string(),\n'
                    '          "Q8_quaternionic_dims": sum(int(b.dim) for b in q8.blocks if b.name == "2a"),\n'
                    '          "Q8_quaternionic_real_form": any(b.real_form for b in q8.blocks if b.name == "2a")}')),
]

NOTEBOOKS["05_learned_vs_constructed"] = [
    ("md", "# Learned against constructed\n\n"
           "**Question.** Is a trained S3 model the exact construction up to a change of basis and a "
           "scale per token? Is the small deviation from an exact representation what limits length "
           "generalisation, and at what horizon does it bite?\n\n"
           "**Method.** Compare the two recovered representations up to symmetry (intertwiners), "
           "swap the learned transitions for the transported construction (a causal test), snap "
           "the learned matrices to the exact representation, and forecast the break from state drift."),
    ("code", SETUP),
    ("code", 'from analyses import compare_models\n'
             'from analyses.reporting.figures import comparison_figure\n'
             'model, task = workbench.load_checkpoint("groupS3_full_s0")\n'
             'comparison = compare_models(model, task, n_sequences=32)\n'
             'print(comparison.sentence())\n'
             'comparison_figure(comparison);'),
    ("md", "The FSM construction is the regular representation (`2×2a ⊕ trivial ⊕ sign`); the "
           "learned model keeps only `2a`: not equivalent, but a quotient (the construction's "
           "states map onto the learned ones, R² of the trajectory map), and the causal swap "
           "keeps accuracy. Against the construction built from the learned irrep instead "
           "(`construct(task, \"full\", representation=\"2a\")`). The learned matrices miss an "
           "exact representation by ~2.5e-2 (notebook 4), so the comparison's tolerance must sit "
           "above that: at the default `rtol=1e-3` no intertwiner survives, at `rtol=0.05` one does."),
    ("code", 'from workbench.constructions import construct\n'
             'matched = compare_models(model, task, constructed_model=construct(task, "full", representation="2a"),\n'
             '                         construction="full:2a", n_sequences=32, rtol=0.05)\n'
             'print(matched.sentence())'),
    ("md", "**Try it.** Is the learned model equivalent to the `2a` construction, up to symmetry?"),
    ("code", 'my_answer = True   # try it: True or False\n'
             'assert my_answer == matched.equivalent, "look at the sentence above again"\n'
             'print("equivalent:", matched.equivalent, "| intertwiner dimension", matched.intertwiner_dim,\n'
             '      "of", matched.expected_intertwiner_dim, "| similarity residual", matched.similarity_residual)'),
    ("md", "**The horizon.** The learned matrices miss an exact representation by about 1e-2. "
           "On A5 that shows in the states: those for one group element walk away from where they "
           "sat at short lengths. `state_drift` fits the walk and predicts the length at which it "
           "crosses half the distance to the nearest other state."),
    ("code", 'from analyses import snap_transitions, state_drift\n'
             'a5_model, a5_task = workbench.load_checkpoint("groupA5_full_s0")\n'
             'drift = state_drift(a5_model, a5_task, max_length=1000, n_sequences=32)\n'
             'print(drift.sentence())\n'
             'drift.plot();'),
    ("md", "**Snapping** replaces the learned transitions, on the subspace the analysis uses, by "
           "the exact representation it names (same basis, same token scales, the model's own start "
           "state and readout) and measures accuracy again."),
    ("code", 'snap = snap_transitions(a5_model, a5_task, lengths=(500, 5000), n_sequences=64)\n'
             'print(snap.sentence())'),
    ("md", "**Answer.** The S3 model is the `2a` construction up to symmetry, and a quotient of the "
           "FSM construction that behaves like it under the causal swap; on A5, snapping to the exact representation keeps accuracy where the "
           "learned one loses it, near the horizon the drift forecasts."),
    ("code", answer('{"S3_equivalent_fsm": bool(comparison.equivalent), "S3_equivalent_2a": bool(matched.equivalent),\n'
                    '          "S3_causal_accuracy": comparison.causal_accuracy, "A5_predicted_break": drift.predicted_break_length,\n'
                    '          "A5_learned_5000": snap.accuracy_learned[5000], "A5_snapped_5000": snap.accuracy_snapped[5000]}')),
]

NOTEBOOKS["06_automaton_extraction"] = [
    ("md", "# Automaton extraction, on a built-in task and on your own\n\n"
           "**Question.** Can we read the finite-state machine a model implements back out of its "
           "hidden states, and is it the task's machine? Does the same work for an automaton you "
           "write yourself in a JSON file?\n\n"
           "**Method.** Cluster the normalized hidden states, read transitions between clusters by "
           "majority vote, minimise, and test isomorphism with the task's minimal automaton."),
    ("code", SETUP),
    ("code", 'from analyses import extract_automaton\n'
             'from analyses.reporting.figures import automaton_graph\n'
             'model, task = workbench.load_checkpoint("fsm5_full_s0")\n'
             'res = extract_automaton(model, task)\n'
             'print(res.sentence())\n'
             'automaton_graph(res, task);'),
    ("md", "A variant that cannot hold this machine (block size 2) gives loose clusters and a "
           "different machine:"),
    ("code", 'from analyses.reporting.figures import Zoo\n'
             'block_model, block_task = workbench.load_checkpoint(Zoo.open().pick("fsm:5", "block2"))\n'
             'block = extract_automaton(block_model, block_task)\n'
             'print(block.sentence())'),
    ("md", "**Your own automaton.** A complete deterministic Moore machine as JSON "
           "(`docs/your-own-models-and-automata.md`): a counter to 3 with a reset. "
           "`make_task(\"automaton:PATH.json\")` makes it a task like any other; here we take its "
           "exact construction (`construct(task, \"full\")`) as the model, so the cell runs in a "
           "second: `python -m workbench train --task automaton:PATH.json` trains one instead."),
    ("code", 'import tempfile, pathlib\n'
             'from workbench.tasks import make_task\n'
             'from workbench.constructions import construct\n'
             'spec_file = pathlib.Path(tempfile.mkdtemp()) / "counter.json"\n'
             'spec_file.write_text(json.dumps({"transitions": [[1, 0], [2, 0], [3, 0], [3, 0]], "start": 0,\n'
             '                                 "outputs": [0, 1, 2, 3], "token_names": ["inc", "reset"]}))\n'
             'own_task = make_task(f"automaton:{spec_file}")\n'
             'own_model = construct(own_task, "full")\n'
             'print(own_task.automaton.n_states, "states;", "accuracy at 200:", workbench.evaluate(own_model, own_task, [200]))\n'
             'own = extract_automaton(own_model, own_task)\n'
             'print(own.sentence())\n'
             'automaton_graph(own, own_task);'),
    ("md", "**Try it.** How many states does the extracted machine of your automaton have?"),
    ("code", 'my_answer = 4   # try it\n'
             'assert my_answer == own.n_states, f"the minimised extracted machine has {own.n_states} states"\n'
             'print("right")'),
    ("md", "**Answer.** The full model's machine is the task's (isomorphic); the block-2 model's is "
           "not; your own automaton comes back exactly from its construction."),
    ("code", answer('{"fsm5_full_isomorphic": bool(res.isomorphic), "fsm5_block2_isomorphic": bool(block.isomorphic),\n'
                    '          "own_isomorphic": bool(own.isomorphic), "own_states": int(own.n_states)}')),
]

NOTEBOOKS["07_train_your_own"] = [
    ("md", "# Train your own\n\n"
           "**Question.** Train the full model and the real-diagonal model on addition mod 3 for a "
           "few seconds each: does the hierarchy of notebook 3 (a real diagonal holds only parity) "
           "show up in your own runs, at 50 times the training length?\n\n"
           "**Method.** `workbench.training.TrainConfig` and `train` (in memory: `out_dir=None`), a "
           "grid of two variants, the results side by side; then the named recipes and a shipped "
           "experiment grid's table. Runs are a few hundred steps so that the notebook executes in "
           "seconds (`python -m workbench train --help` lists the options for real runs)."),
    ("code", SETUP),
    ("code", 'from workbench.training import TrainConfig, train\n'
             'base = dict(task="cyclic:3", d_hidden=8, steps=1500, eval_every=100, eval_lengths=(10, 500),\n'
             '            eval_sequences=256, val_sequences=128, long_val_sequences=64, seed=0)\n'
             'print(TrainConfig(**base))'),
    ("md", "Every field of the config is a recipe option (learning rates, schedule, training "
           "lengths, loss on the final step or every step, early stopping). The grid: one run per "
           "variant."),
    ("code", 'runs = {variant: train(TrainConfig(variant=variant, **base), out_dir=None, progress=False)\n'
             '        for variant in ("full", "real_diag")}\n'
             'print(f"{\'variant\':<10} {\'steps\':>5} {\'seconds\':>7} {\'solved\':>6}  normalized accuracy by length")\n'
             'for variant, run in runs.items():\n'
             '    print(f"{variant:<10} {run.steps:>5} {run.train_time_s:>7.1f} {run.solved!s:>6}  {run.normalized_accuracy}")'),
    ("md", "Reading the table: normalized accuracy is 0 at chance and 1 when always right; "
           "`solved` is the recipe's early-stopping verdict on the validation set."),
    ("md", "**Named recipes.** Beyond single fields, a recipe is a named preset: `paper` is the "
           "paper's protocol, `collapse_gap` (the `train` default) adds the state-collapse "
           "objective, `stream` carries states across batches. `recipe_config` turns a recipe "
           "and a task into a `TrainConfig` (`python -m workbench train --recipe NAME`):"),
    ("code", 'from workbench.recipes import RECIPES, recipe_config\n'
             'for name, recipe in RECIPES.items():\n'
             '    print(f"{name:<16} {recipe.protocol:<9} {recipe.description[:80]}")\n'
             'cfg = recipe_config("collapse_gap", "fsm:25")\n'
             'print("fsm:25 under collapse_gap:", {k: getattr(cfg, k) for k in ("collapse_weight", "collapse_form", "train_lengths")})'),
    ("md", "**An experiment grid, read back.** Grids are data (`checkpoints/experiments/NAME/grid.json`, "
           "run with `python -m workbench experiment run`); each writes `results.csv`. Here is the "
           "shipped grid that tried `collapse_gap` on the paper's hardest cells, grouped over seeds:"),
    ("code", 'from workbench.checkpoints import zoo_root\n'
             'from workbench.experiments import read_table, summary_cells\n'
             'rows = read_table(zoo_root() / "experiments" / "collapse_gap_targets" / "results.csv")\n'
             'cells = summary_cells(rows, key="acc_500")\n'
             'for c in cells:\n'
             '    print(f"{c[\'task\']:<10} {c[\'variant_key\']:<9} seeds {c[\'finished\']}/{c[\'seeds\']}  "\n'
             '          f"median {c[\'median\']:.3f}  best {c[\'best\']:.3f}  worst {c[\'worst\']:.3f}")'),
    ("md", "**Try it.** Which cell of that grid has the weakest single seed (the lowest worst-seed "
           "accuracy at length 500)?"),
    ("code", 'my_answer = "cyclic:50"   # try it: a task spec from the table\n'
             'weakest = min((c for c in cells if c["worst"] is not None), key=lambda c: c["worst"])\n'
             'print("weakest seed:", weakest["task"], weakest["variant_key"], round(weakest["worst"], 3))\n'
             'assert my_answer == weakest["task"], f"look at the table: {weakest[\'task\']}"\n'
             'print("right: one block-2 seed on cyclic:50 stops at 0.97")'),
    ("md", "**Try it.** Which variant is near chance at length 500?"),
    ("code", 'my_answer = "real_diag"   # try it\n'
             'worst = min(runs, key=lambda v: runs[v].normalized_accuracy[500])\n'
             'assert my_answer == worst, f"look at the table: {worst}"\n'
             'print("right: a real diagonal cannot hold the cube roots of unity")'),
    ("md", "**Answer.** The full model learns addition mod 3 and holds it at length 500; the real "
           "diagonal does not get far above chance."),
    ("code", answer('{v: {"normalized_500": r.normalized_accuracy[500], "solved": bool(r.solved)} for v, r in runs.items()}')),
]

NOTEBOOKS["08_bring_your_own_model"] = [
    ("md", "# Bring your own model\n\n"
           "**Question.** You trained a bilinear RNN elsewhere and have its tensors. Does the "
           "workbench rebuild exactly your model from them, and does every analysis, and nnsight, "
           "then work on it as on a zoo model?\n\n"
           "**Method.** `HookedBilinearRNN.from_weights(variant, tensors)`, here with tensors read "
           "from a safetensors file (standing in for your export), then `analyze_model` and an "
           "`nnsight` trace."),
    ("code", SETUP),
    ("code", 'from safetensors.numpy import load_file\n'
             'from workbench.checkpoints import zoo_root\n'
             'from workbench.models import HookedBilinearRNN\n'
             'tensors = load_file(zoo_root() / "zoo" / "cyclic5_full_s0" / "model.safetensors")\n'
             'print({k: v.shape for k, v in tensors.items()})\n'
             'mine = HookedBilinearRNN.from_weights("full", tensors)\n'
             'print(mine.cfg.variant, "hidden", mine.cfg.d_hidden, "classes", mine.cfg.n_classes)'),
    ("md", "The shapes give the sizes; the tensors keep their names. Same logits as the zoo "
           "model loaded the usual way?"),
    ("code", 'reference, task = workbench.load_checkpoint("cyclic5_full_s0")\n'
             'tokens = task.eval_set(length=100, n_sequences=64).tokens\n'
             'logit_gap = (mine(tokens) - reference(tokens)).abs().max().item()\n'
             'print(f"max |logits(from_weights) - logits(zoo)| = {logit_gap:.1e}")'),
    ("md", "**The whole analysis.** `analyze_model` runs every analysis that applies (the "
           "`analyze --json` object):"),
    ("code", 'from analyses import analyze_model\n'
             'report = analyze_model(mine, task, accuracy=workbench.evaluate(mine, task, [500], n_sequences=128))\n'
             'print(sorted(report))\n'
             'print("max phase error", report["spectra"]["max_phase_error"], "| predicted break length", report["spectra"]["spectral_break_length"])'),
    ("md", "The same spectra as a figure (eigenvalues of each token's matrix on the unit circle):"),
    ("code", 'from analyses import spectra\n'
             'spectra(mine, task).plot();'),
    ("md", "**nnsight.** `nnsight.NNsight(model)` traces it: `hook_state` fires once per step, so "
           "`tracer.iter[i]` is step i + 1. The states read in the trace are those `run_with_cache` "
           "returns."),
    ("code", 'import nnsight\n'
             'short = tokens[:4, :11]\n'
             'nm = nnsight.NNsight(mine)\n'
             'with nm.trace(short) as tracer:\n'
             '    traced_states = nnsight.save([])\n'
             '    for _ in tracer.iter[0:short.shape[1]]:\n'
             '        traced_states.append(nm.blocks[0].hook_state.output.save())\n'
             'traced = torch.stack(list(traced_states), 1)\n'
             '_, cache = mine.run_with_cache(short, names_filter="blocks.0.hook_state")\n'
             'nnsight_gap = (traced - cache["blocks.0.hook_state"]).abs().max().item()\n'
             'print(tuple(traced.shape), f"max |traced - run_with_cache| = {nnsight_gap:.1e}")'),
    ("md", "**Try it.** How many states per sequence did the trace collect?"),
    ("code", 'my_answer = 11   # try it\n'
             'assert my_answer == traced.shape[1]\n'
             'print("right: one per step")'),
    ("md", "**Answer.** `from_weights` rebuilds the model to float32 round-off, the analyses run "
           "on it unchanged, and nnsight reads the same per-step states."),
    ("code", answer('{"logit_gap": logit_gap, "nnsight_gap": nnsight_gap, "accuracy_500": report["accuracy"][500],\n'
                    '          "analyses": sorted(k for k in report if k not in ("task", "variant", "accuracy"))}')),
]

NOTEBOOKS["09_paper_tables"] = [
    ("md", "# The paper's tables, reproduced from the shipped zoo\n\n"
           "**Question.** How many cells of the paper's hierarchy table (chance-normalized accuracy "
           "at length 500) does the shipped zoo reproduce, and which differ?\n\n"
           "**Method.** The zoo's `metrics.json` files, median and best over seeds, beside the "
           "paper's numbers; nothing is retrained here (`make zoo` rebuilds the zoo)."),
    ("code", SETUP),
    ("code", 'from IPython.display import Markdown\n'
             'from workbench import zoo as Z\n'
             'from analyses.reporting.figures import Zoo\n'
             'zoo = Zoo.open()\n'
             'print(len(zoo.rows), "finished runs")\n'
             'Markdown(Z.reproduction_table(zoo.rows))'),
    ("code", 'from analyses.reporting.figures import FIGURES, Findings\n'
             'FIGURES["hierarchy"].make(Findings(zoo));'),
    ("md", "Cell by cell: a cell reproduces when the zoo's median over seeds is within 0.1 of the "
           "paper's number."),
    ("code", 'from analyses.reporting.paper_comparison import compare_with_paper\n'
             'comparison = compare_with_paper(zoo, tol=0.1)\n'
             'print(comparison.sentence())\n'
             'for cell in comparison.disagreements():\n'
             '    print(cell)\n'
             'comparison.plot();'),
    ("md", "**Try it.** With a looser tolerance (0.3), do more cells reproduce?"),
    ("code", 'loose = compare_with_paper(zoo, tol=0.3)\n'
             'my_answer = True   # try it\n'
             'assert my_answer == (loose.summary()["n_reproduced"] > comparison.summary()["n_reproduced"])\n'
             'print(loose.sentence())'),
    ("md", "**Answer.** The fraction of the paper's cells the zoo reproduces, and the cells that "
           "differ, are listed above; the differences are discussed in `checkpoints/analysis.md`."),
    ("code", answer('{k: comparison.summary()[k] for k in ("tol", "n_cells", "n_reproduced", "fraction_reproduced")}')),
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

    argv = list(sys.argv[1:] if argv is None else argv)
    out = HERE
    if "--out" in argv:
        i = argv.index("--out")
        if i + 1 >= len(argv):
            print("--out needs a folder", file=sys.stderr)
            return 2
        out = Path(argv.pop(i + 1))
        argv.pop(i)
        out.mkdir(parents=True, exist_ok=True)
    run = "--execute" in argv
    only = [a for a in argv if not a.startswith("--")]
    unknown = [a for a in only if a not in NOTEBOOKS]
    if unknown:
        print(f"unknown notebook {unknown[0]!r}; accepted: {', '.join(NOTEBOOKS)}", file=sys.stderr)
        return 2
    for name, cells in NOTEBOOKS.items():
        if only and name not in only:
            continue
        nb = build(name, cells)
        t0 = time.perf_counter()
        if run:
            execute(nb)
        nbformat.write(nb, out / f"{name}.ipynb")
        print(f"wrote {name}.ipynb" + (f" (executed in {time.perf_counter() - t0:.1f} s)" if run else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
