"""The analyses of zoo models that figures and the report show, run once each and memoised.

Every number comes from an analysis module (``analyses.spectral``, ``analyses.groups.representations``,
``analyses.groups.comparison``, ``analyses.automata_extraction``, ``analyses.probing``); every sentence
is the result object's own ``sentence()``.
"""
from __future__ import annotations


from analyses.reporting.figures.zoo_data import Zoo

#: Patching sweep settings for the report: pairs differing in one token 10 steps before the end,
#: so the difference survives in the state (an early change can be forgotten by synchronising
#: automata), over the last 20 steps plus a few early ones.
PATCH_PAIRS = 32
PATCH_LENGTH = 41


class MissingModelError(LookupError):
    """The zoo has no finished run for a (task, variant) a figure needs."""


def missing_hint(zoo: Zoo, task: str, variant_key: str) -> str:
    from workbench.zoo import task_tag

    return (f"the zoo at {zoo.root} has no finished run of {task} with variant {variant_key}; "
            f"train it with `python -m workbench zoo build --only '{task_tag(task)}_{variant_key}_*'`")


class Findings:
    """Memoised analyses of the models of one zoo (one instance per report / figure run).

    Parameters
    ----------
    zoo : Zoo
    """

    def __init__(self, zoo: Zoo):
        self.zoo = zoo
        self._cache: dict = {}

    def _memo(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def require(self, task: str, variant_key: str) -> str:
        """The zoo name representing (task, variant); MissingModelError with a build hint if none."""
        name = self.zoo.pick(task, variant_key)
        if name is None:
            raise MissingModelError(missing_hint(self.zoo, task, variant_key))
        return name

    def _load(self, name: str, analysis: str):
        """Load ``name``; refuse, naming the analysis, when the registry says it does not apply."""
        from analyses.reporting.registry import ANALYSES

        model, task = self.zoo.load(name)
        if not ANALYSES[analysis].applies(model, task):
            raise ValueError(f"analysis {analysis!r} does not apply to {name} (variant {model.cfg.variant!r}, "
                             f"additive={model.cfg.additive}, task {task.spec!r})")
        return model, task

    def spectra(self, name: str):
        """``analyses.spectral.spectra(model, task)`` -> SpectraResult."""
        from analyses.spectral import spectra

        def run():
            model, task = self._load(name, "spectra")
            return spectra(model, task)
        return self._memo(("spectra", name), run)

    def representation(self, name: str):
        """``analyses.groups.representations.recover_representation`` -> RepresentationResult."""
        from analyses.groups.representations import recover_representation

        def run():
            model, task = self._load(name, "representation")
            return recover_representation(model, task)
        return self._memo(("representation", name), run)

    def drift(self, name: str):
        """``analyses.drift.state_drift(model, task)`` -> DriftResult."""
        from analyses.drift import state_drift

        def run():
            model, task = self._load(name, "drift")
            return state_drift(model, task)
        return self._memo(("drift", name), run)

    def snapped(self, name: str, lengths=(500, 5000), n_sequences: int = 64):
        """``analyses.groups.snapping.snap_transitions`` (the representation snapped to exact) -> SnappedResult."""
        from analyses.groups.snapping import snap_transitions

        def run():
            model, task = self.zoo.load(name)
            return snap_transitions(model, task, lengths=lengths, n_sequences=n_sequences, rep=self.representation(name))
        return self._memo(("snapped", name, tuple(lengths), n_sequences), run)

    def comparison(self, name: str, causal_sequences: int = 32):
        """``analyses.groups.comparison.compare_models`` against the variant's construction, causal swap
        test at length 500 on ``causal_sequences`` sequences -> ComparisonResult."""
        from analyses.groups.comparison import compare_models

        def run():
            model, task = self._load(name, "comparison")
            return compare_models(model, task, n_sequences=causal_sequences)
        return self._memo(("comparison", name), run)

    def extraction(self, name: str):
        """``analyses.automata_extraction.extract_automaton`` -> ExtractionResult."""
        from analyses.automata_extraction import extract_automaton

        def run():
            model, task = self._load(name, "automaton")
            return extract_automaton(model, task)
        return self._memo(("extraction", name), run)

    def patching(self, name: str):
        """``analyses.probing.sweep_task`` (pairs differ 10 steps before the end) -> PatchingResult."""
        from analyses.probing import sweep_task

        def run():
            model, task = self.zoo.load(name)
            length = task.valid_length(PATCH_LENGTH)
            return sweep_task(model, task, n_pairs=PATCH_PAIRS, length=length, position=length - 11,
                              n_boot=500)
        return self._memo(("patching", name), run)


def patching_changed_step(task) -> int:
    """The 1-based step of the changed token in :meth:`Findings.patching` pairs."""
    return task.valid_length(PATCH_LENGTH) - 10
