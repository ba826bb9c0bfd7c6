"""What every notebook of the course keeps to, read from the committed notebooks: teaching code
outweighs checking code; the exercises follow the one protocol (an `answer = ...` cell, then a
one-line `check("NN.k", answer)` cell, the exercises numbered in order and all known to
dkp.course.exercises, no checker defined in the notebook); the checks of a section sit in one cell;
no thread settings or test-suite remarks in the code a student reads; no co-matrix dropout arm is
trained before notebook 06 teaches it; and each notebook ends by pointing to the next one (the last
to the README)."""
import ast
import json
import re
from pathlib import Path

import pytest

from dkp.course.exercises import EXERCISES
from dkp.study import catalog

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ANSWER = re.compile(r"^answer = \.\.\.(\s+#.*)?$")
CHECK = re.compile(r'^check\("(\d\d)\.(\d+)", answer(, [^\n]*)?\)$')
# exercise code of the conventions before the one protocol, counted as checking wherever it appears
OLD_EXERCISE = re.compile(r"def check_exercise|def _verdict|^check_exercise_\d\(|^(answer\w*|kron_apply) = (None|\.\.\.)",
                          re.M)


def code_cells(path):
    nb = json.loads(path.read_text())
    return ["".join(c["source"]).strip() for c in nb["cells"] if c["cell_type"] == "code"]


def kind(source):
    """'check' for a section's check cell, 'exercise' for an answer or check cell, else 'teaching'."""
    if source.startswith("# Checks"):
        return "check"
    if ANSWER.match(source) or CHECK.match(source) or OLD_EXERCISE.search(source):
        return "exercise"
    return "teaching"


def line_counts(path):
    """{kind: non-blank code lines} of a notebook."""
    counts = {"teaching": 0, "check": 0, "exercise": 0}
    for source in code_cells(path):
        counts[kind(source)] += sum(1 for line in source.splitlines() if line.strip())
    return counts


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_teaching_code_outweighs_checking_code(path):
    n = line_counts(path)
    assert n["teaching"] > n["check"] + n["exercise"], f"{path.name}: {n}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_exercises_follow_the_one_protocol(path):
    number = path.name[:2]
    cells = code_cells(path)
    ids = []
    for i, source in enumerate(cells):
        assert not re.search(r"def check_exercise|def _verdict|@_checker|^answer\w* = None", source, re.M), \
            f"{path.name}: a checker or an old placeholder in a code cell:\n{source[:200]}"
        if source.startswith("answer"):
            assert ANSWER.match(source), f"{path.name}: an exercise cell is `answer = ...`, not:\n{source}"
            follow = CHECK.match(cells[i + 1]) if i + 1 < len(cells) else None
            assert follow, f"{path.name}: the cell after `answer = ...` must be check(\"{number}.k\", answer)"
            ids.append(f"{follow.group(1)}.{follow.group(2)}")
        elif "check(" in source and kind(source) == "exercise":
            assert i and ANSWER.match(cells[i - 1]), f"{path.name}: {source} has no answer cell before it"
    assert ids, f"{path.name} has no checked exercises"
    assert ids == [f"{number}.{k}" for k in range(1, len(ids) + 1)], ids
    assert ids == [i for i in EXERCISES if i.startswith(number + ".")], \
        f"{path.name}: its exercises {ids} are not the ones dkp.course.exercises knows"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_check_cell_a_section_and_no_plumbing_where_students_read(path):
    cells = code_cells(path)
    headers = [s.splitlines()[0] for s in cells if kind(s) == "check"]
    sections = [re.match(r"# Checks of section (\d+)\b", h) for h in headers]
    assert all(sections), f"{path.name}: a check cell must open with '# Checks of section N': {headers}"
    numbers = [m.group(1) for m in sections]
    assert len(numbers) == len(set(numbers)), f"{path.name}: two check cells for one section: {headers}"
    for source in cells:
        assert not re.search(r"environ\.setdefault|environ\[[^]]*\]\s*=|\"OPENBLAS_NUM_THREADS\"\s*:", source), \
            f"{path.name}: a thread setting in a code cell:\n{source[:300]}"
        assert not re.search(r"test suite|tests/test_", source), f"{path.name}: test plumbing in:\n{source[:300]}"


def literal(node):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def test_no_co_matrix_dropout_arm_trains_before_notebook_06():
    """Notebooks 00-05 run experiments only with `only=` arms that have no co-matrix dropout."""
    assert catalog.arms("doping")["doped-kp-cmr"].cmr_p > 0
    for path in NOTEBOOKS[:6]:
        trees = [ast.parse(s) for s in code_cells(path)]
        lists = {t.id: literal(n.value) for tree in trees for n in ast.walk(tree)
                 if isinstance(n, ast.Assign) and isinstance(n.value, (ast.List, ast.Tuple))
                 for t in n.targets if isinstance(t, ast.Name)}
        for tree in trees:
            for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
                name = getattr(call.func, "attr", getattr(call.func, "id", ""))
                if name != "run_experiment":
                    continue
                experiment = ast.literal_eval(call.args[0])
                arms = catalog.experiment_arms(experiment)
                only = next((k.value for k in call.keywords if k.arg == "only"), None)
                trained = (set(arms) if only is None else
                           set(lists[only.id]) if isinstance(only, ast.Name) else set(ast.literal_eval(only)))
                dropout = sorted(arm for arm in trained if arms[arm].cmr_p > 0)
                assert not dropout, f"{path.name} trains {experiment}'s co-matrix dropout arm(s) {dropout}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_ends_by_pointing_to_the_next(path):
    nb = json.loads(path.read_text())
    last = nb["cells"][-1]
    text = "".join(last["source"])
    assert last["cell_type"] == "markdown" and text.startswith("Next:"), f"{path.name} ends with:\n{text[:200]}"
    i = NOTEBOOKS.index(path)
    target = NOTEBOOKS[i + 1].name if i + 1 < len(NOTEBOOKS) else "../README.md"
    assert f"]({target})" in text, f"{path.name} should link {target} in its last cell:\n{text}"


def test_the_line_count_tells_checking_from_teaching():
    assert kind("# Checks of section 2: x\nassert 1") == "check"
    assert kind("answer = ...  # your answer: a number") == kind('check("01.3", answer, model=model)') == "exercise"
    assert kind("answer = compute()") == kind("x = check_all()") == "teaching"
    assert kind("def _verdict(answer):\n    pass") == kind("answer_1 = None  # your code here") == "exercise"
