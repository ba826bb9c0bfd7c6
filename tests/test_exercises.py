"""The course's exercise checker (dkp.course.exercises): for every exercise of every notebook, its
reference answer is accepted, each common wrong answer it names gets its own hint, the placeholder
prints `not answered yet`, and an answer of the wrong type gets a message saying what to give; the
notebooks use it, one way, for every exercise."""
import numpy as np
import pytest

from dkp.core.data import load_corpus
from dkp.core.lstm import LSTMLayer
from dkp.core.weights import Dense
from dkp.course import exercises
from dkp.course.exercise_protocol import ANY, Near, Reference, Unavailable, judge, same
from dkp.study import catalog
from dkp.training.loop import Trainer, build_model


@pytest.fixture(scope="module")
def context():
    """What each exercise that needs the notebook's objects is passed, built small."""
    rng = np.random.default_rng(0)
    step = LSTMLayer(Dense(rng.uniform(-0.5, 0.5, (16, 7))), rng.uniform(-0.5, 0.5, 16), 3, 4)
    x, h0, c0 = rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    corpus = load_corpus("ptb")
    V = len(corpus.vocab)
    lm = build_model(catalog.quick(catalog.arms("kp-loss")["dense"]).with_(hidden=16), V, seed=0)
    doped_config = catalog.quick(catalog.arms("cma")["doped-kp"]).with_(train_tokens=4_000, eval_tokens=1_000,
                                                                        epochs=1, anneal_start=0.2, anneal_end=0.8)
    doped = Trainer(doped_config, seed=0, corpus=corpus, progress=False)
    doped.run()
    E = rng.standard_normal((300, 12))
    freq = rng.random(300) + 0.01
    freq /= freq.sum()
    return {"01.2": dict(layer=step, x=x, state=(h0, c0)), "01.3": dict(model=lm),
            "02.4": dict(W=rng.standard_normal((200, 100))),
            "05.3": dict(model=doped.model, ids=doped.valid_ids[:600], bptt=doped_config.bptt),
            "09.2": dict(E=E, freq=freq), "09.3": dict(D=E, freq=freq)}


def spoil(value):
    """A wrong value of the same type."""
    if isinstance(value, (bool, np.bool_)):
        return not value
    if isinstance(value, int):
        return 2 * value + 1
    if isinstance(value, float):
        return 1.37 * value + 1
    if isinstance(value, tuple):
        return tuple(spoil(v) for v in value)
    return value


def concrete(pattern, solution):
    """A wrong answer of the pattern: ANY replaced by a wrong value (the hint is about the other
    parts), Near by a number near its value."""
    if pattern is ANY:
        return spoil(solution)
    if isinstance(pattern, Near):
        return pattern.value * (1 + pattern.rtol / 3)
    if isinstance(pattern, dict):
        return {k: concrete(v, solution[k]) for k, v in pattern.items()}
    if isinstance(pattern, tuple):
        return tuple(concrete(p, s) for p, s in zip(pattern, solution))
    return pattern


def wrong_type(exercise_id):
    return {"02.3": 3.0}.get(exercise_id, "twelve")


@pytest.mark.parametrize("exercise_id", list(exercises.EXERCISES))
def test_every_exercise_accepts_its_reference_and_names_each_common_mistake(exercise_id, context):
    ctx = context.get(exercise_id, {})
    try:
        ref = exercises.reference(exercise_id, **ctx)
    except Unavailable as why:
        pytest.skip(f"a committed record is absent: {why}")
    assert exercises.verdict(exercise_id, ref.solution, **ctx).startswith("correct")
    assert exercises.verdict(exercise_id, ..., **ctx) == "not answered yet"
    message = exercises.verdict(exercise_id, wrong_type(exercise_id), **ctx)
    assert message.startswith("not yet: answer with ") and ("str" in message or "float" in message), message
    for pattern, hint in ref.mistakes:
        wrong = concrete(pattern, ref.solution)
        assert exercises.verdict(exercise_id, wrong, **ctx) == f"not yet: {hint}" or \
            (callable(wrong) and hint in exercises.verdict(exercise_id, wrong, **ctx)), (pattern, hint)


def test_every_exercise_has_hints_for_common_mistakes():
    """Every exercise that needs nothing from the notebook names common wrong answers with their hints
    (07.3, a ranking, names its one: the reverse order; its other hints are computed per answer)."""
    few = [i for i, e in exercises.EXERCISES.items() if not e.needs and i != "07.3"
           and not _mistakes_or_skip(i)]
    assert not few, f"exercises without hints for common wrong answers: {few}"


def _mistakes_or_skip(exercise_id):
    try:
        return exercises.reference(exercise_id).mistakes
    except Unavailable:
        return True


def test_a_missing_name_from_the_notebook_is_the_notebooks_error():
    with pytest.raises(TypeError, match="needs model=..."):
        exercises.verdict("01.3", 100.0)
    with pytest.raises(KeyError, match="no exercise '99.1'"):
        exercises.check("99.1", 1)


def test_the_protocol_reports_instead_of_raising():
    from dkp.course.exercise_protocol import Exercise, number
    broken = Exercise("x.1", number(), lambda: Reference(1.0, otherwise=lambda a, r: 1 / 0))
    assert judge(broken, 2.0, {}) == "not yet: could not read this answer (ZeroDivisionError: division by zero)"
    absent = Exercise("x.2", number(), lambda: (_ for _ in ()).throw(Unavailable("data/results/x.json is absent")))
    assert judge(absent, 2.0, {}) == "cannot be checked here: data/results/x.json is absent"
    assert judge(broken, True, {}) == "not yet: answer with a number, not bool True"
    assert judge(broken, float("nan"), {}).startswith("not yet: answer with a number")


def test_same_compares_numbers_parts_and_patterns():
    assert same(1.0 + 1e-9, 1.0) and not same(1.01, 1.0) and not same("1", 1.0) and not same(True, 1.0)
    assert same((3, 2.0), (3, ANY)) and not same((3,), (3, 1)) and same([1, 2], (1, 2))
    assert same({"a": 1, "b": (2, 3)}, {"a": 1, "b": (2, 3)}) and not same({"a": 1}, {"a": 1, "b": 2})
    assert same(1.004, Near(1.0, 5e-3)) and not same(1.01, Near(1.0, 5e-3))
    assert same(None, None) and not same(0.0, None) and not same(None, 0.0)
    assert same(np.array([1.0, 2.0]), np.array([1.0, 2.0])) and not same([1.0], np.array([1.0, 2.0]))


def test_check_prints_the_verdict(capsys):
    stored, compression = 520 * 260 + 5 * 5, 2600 * 1300 / (520 * 260 + 5 * 5)
    exercises.check("00.2", ...)
    exercises.check("00.2", (stored, 1 / compression))
    exercises.check("00.2", (stored, compression))
    exercises.check("00.2", (stored, 3.0))
    out = capsys.readouterr().out.splitlines()
    assert out == ["not answered yet", "not yet: the compression is dense / stored, not stored / dense", "correct",
                   "not yet: the compression is m n / (m1 n1 + m2 n2)"]
