"""Every analysis result follows one protocol: summary() (JSON-safe), sentence() (a method that
returns a string), plot(ax=None) (draws through analyses.plot) and a repr under 500 characters."""
import dataclasses
import importlib
import inspect
import json
import pkgutil

import matplotlib
import numpy as np
import pytest

import analyses
from analyses._result import Result
from workbench.constructions import construct
from workbench.tasks import make_task

matplotlib.use("Agg")


def _result_classes():
    found = {}
    for info in pkgutil.walk_packages(analyses.__path__, "analyses."):
        if info.name.startswith(("analyses.reporting", "analyses.plot")):
            continue
        mod = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ == mod.__name__ and dataclasses.is_dataclass(cls) and cls.__name__.endswith(
                    ("Result", "Report", "Subspace", "Curve")):
                found[cls.__name__] = cls
    return found


RESULT_CLASSES = _result_classes()


def test_the_scan_finds_the_result_types():
    assert {"SpectraResult", "DriftResult", "ExtractionResult", "RepresentationResult", "ComparisonResult",
            "SnappedResult", "PersistentSubspace", "ProbeResult", "PatchingResult", "TransplantResult",
            "DecompositionReport", "CPResult", "TuckerResult", "RankCurve", "InteractionResult",
            "AttributionResult"} <= set(RESULT_CLASSES)


@pytest.mark.parametrize("name", sorted(RESULT_CLASSES))
def test_every_result_type_has_the_four_members(name):
    cls = RESULT_CLASSES[name]
    assert issubclass(cls, Result), f"{name} does not derive from analyses._result.Result"
    for member in ("summary", "sentence", "plot"):
        assert callable(getattr(cls, member, None)), f"{name}.{member} is not a method"
        assert getattr(cls, member) is not getattr(Result, member), f"{name} does not define {member}()"
    assert cls.__repr__ is Result.__repr__, f"{name} has a dataclass repr (use @dataclass(repr=False))"
    assert "ax" in inspect.signature(cls.plot).parameters


@pytest.fixture(scope="module")
def results():
    """One real result of every type, on exact constructions (ground truth known)."""
    from analyses import (attribute_task, compare_models, decompose_model, extract_automaton,
                          persistent_subspace,
                          probe_accuracy_by_step, recover_representation, snap_transitions, spectra,
                          state_drift, state_transplant, sweep_task)
    from analyses.tensor_decomposition import cp_decompose, interaction_matrices, model_transition_tensor, tucker_decompose

    s3 = make_task("group:S3")
    model = construct(s3, "full")
    rep = recover_representation(model, s3)
    cyc = make_task("cyclic:5")
    rot = construct(cyc, "rotation")
    W = model_transition_tensor(model)
    decomp = decompose_model(model, max_rank=3)
    out = {
        "SpectraResult": spectra(rot, cyc),
        "DriftResult": state_drift(rot, cyc, max_length=400),
        "ExtractionResult": extract_automaton(model, s3),
        "RepresentationResult": rep,
        "ComparisonResult": compare_models(model, s3, n_sequences=8),
        "SnappedResult": snap_transitions(model, s3, lengths=(50,), n_sequences=16, rep=rep),
        "PersistentSubspace": persistent_subspace(rot),
        "ProbeResult": probe_accuracy_by_step(model, s3, test_length=20, n_train=64, n_test=32),
        "PatchingResult": sweep_task(model, s3, n_pairs=8, length=12, n_boot=20),
        "TransplantResult": state_transplant(model, s3, n_pairs=16, length=12, t_patch=6),
        "AttributionResult": attribute_task(model, s3, n_pairs=8, length=12, n_boot=20),
        "DecompositionReport": decomp,
        "CPResult": cp_decompose(W, 2),
        "TuckerResult": tucker_decompose(W, (2, 2, 2)),
        "RankCurve": decomp.cp_curve,
        "InteractionResult": interaction_matrices(W, model.W_U.detach().double().numpy()),
    }
    return out


def test_every_result_type_is_exercised(results):
    assert set(results) == set(RESULT_CLASSES)


@pytest.mark.parametrize("name", sorted(RESULT_CLASSES))
def test_protocol_on_a_real_result(results, name):
    import matplotlib.pyplot as plt

    res = results[name]
    assert type(res).__name__ == name
    text = json.dumps(res.summary(), allow_nan=False)      # JSON-safe: no NaN, no arrays
    assert isinstance(json.loads(text), dict)
    sentence = res.sentence()
    assert isinstance(sentence, str) and len(sentence) > 10
    r = repr(res)
    assert len(r) < 500 and r.startswith(name + "(") and "array([" not in r
    fig, ax = plt.subplots()
    drawn = res.plot(ax=ax)
    assert drawn is not None
    assert ax.has_data() or ax.texts or ax.patches or ax.images or ax.collections
    plt.close("all")


def test_repr_shows_scalars_and_hides_arrays(results):
    r = repr(results["SpectraResult"])
    assert "max_commutator=" in r and "eigenvalues=array(" in r


def test_one_name_one_number(results):
    sp = results["SpectraResult"]
    assert sp.summary()["max_phase_error"] == pytest.approx(sp.max_phase_error)
    assert sp.summary()["max_phase_error_reachable"] == pytest.approx(sp.max_phase_error_reachable)
    assert "predicted_break_length" not in sp.summary()        # the drift forecast's name
    assert "spectral_break_length" in sp.summary()


def test_faithful_means_trivial_kernel_not_exactness():
    """An approximate representation (not exact at atol) with a trivial kernel is faithful."""
    from analyses.groups.representations import recover_from_matrices
    from workbench.tasks.groups import Group

    G = Group.named("S3")
    irreps, names = G.irreps(), G.irrep_names()
    std = [i for i, rho in enumerate(irreps) if rho.shape[1] == 2][0]
    rho = np.real(irreps[std])
    gens = G.generators
    rng = np.random.default_rng(0)
    A = np.stack([rho[g] + 3e-3 * rng.normal(size=(2, 2)) for g in gens])
    res = recover_from_matrices(A, np.array([1.0, 0.3]), G.table, np.array(gens), irreps, names, atol=1e-3)
    assert not res.is_representation and res.is_approximate()
    assert res.kernel == [0] and res.faithful
