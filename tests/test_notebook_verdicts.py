"""The verdicts notebooks 05 and 06 show are the study's, printed by its one printer: each notebook's
verdict cells (marked `# VERDICTS`) call `show_verdicts` with the hypotheses this test lists, so what
a student sees is what `python -m dkp report` and the READMEs print, recomputed from data/results/
when the cell runs (the committed notebooks store no output that could go stale). The numbers the
notebooks' prose gives are recomputed here from the committed runs."""
import ast
import json
from pathlib import Path

import numpy as np
import pytest

from dkp.study import report
from dkp.study.engine import differ
from dkp.study.plans import cma_search, course

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "data" / "results"
NOTEBOOKS = {"05": "05_co_matrix_adaptation.ipynb", "06": "06_co_matrix_dropout.ipynb"}


def shown_ids(name):
    """The hypothesis ids every `# VERDICTS` cell of notebook `name` passes to show_verdicts."""
    nb = json.loads((ROOT / "notebooks" / NOTEBOOKS[name]).read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and "# VERDICTS" in "".join(c["source"])]
    assert cells, f"notebook {name} has no # VERDICTS cell"
    ids = []
    for c in cells:
        calls = [n for n in ast.walk(ast.parse("".join(c["source"])))
                 if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "show_verdicts"]
        assert calls, f"notebook {name}: a # VERDICTS cell does not print through show_verdicts"
        for call in calls:
            ids += [e.value for e in call.args[2].elts]
    return ids


@pytest.mark.parametrize("name, ids", [
    ("05", ("H1a", "H1b", "H1c", "H1d", "H1e", "H2a", "H2b", "H3a", "H3b", "H3c")),
    ("06", ("H4a:M1", "H4b:M6", "H4c:M3", "H4d:M4", "H4d:M5", "H4", "H5a", "H5b", "H5c", "H6a", "H6b", "H6c")),
])
def test_the_notebooks_show_the_plans_verdicts_through_the_one_printer(name, ids):
    shown = shown_ids(name)
    assert set(ids) <= set(shown), set(ids) - set(shown)
    declared = {h.id for h in cma_search.hypotheses()} | {h.id for h in course.hypotheses()}
    assert set(shown) <= declared, set(shown) - declared


def committed():
    return report.records(cma_search.STUDY, RESULTS / "cma-search")


def test_notebook_05_section_4_numbers():
    """The numbers notebook 05's prose gives for the search's timing, density and init families."""
    rec = committed()
    v = {arm: rec.arm_values("cma-timing", arm) for arm in ("late-short", "early-long")}
    rise = np.mean(v["late-short"]["M1"]) / np.mean(v["late-short"]["start"])
    assert 0.05 < rise < 0.2 and np.mean(v["late-short"]["M2"]) > 10
    d = [rec.arm_values("cma-density", a) for a in ("late-short", "late-short-d0.001", "late-short-d0.0001")]
    m1, m4 = ([np.mean(x[k]) for x in d] for k in ("M1", "M4"))
    assert m1[0] < m1[1] < m1[2] and m4[0] > m4[1] > m4[2] and m4[2] < 0.01
    for arm in ("early-long", "late-short"):   # S from a dense model's residual: far more dependence on S
        zero, residual = (np.mean(rec.arm_values("cma-init", a)["M4"]) for a in (arm, f"residual-{arm}"))
        assert residual > 1.0 > 0.2 > zero, arm


def test_notebook_06_section_5_numbers():
    # the longer scale (cma-long): what section 5's prose says, recomputed from the committed runs
    rec = committed()
    v = {x.id: x for x in report.verdicts(cma_search.STUDY, rec=rec)}
    assert v["H6a"].holds and v["H6b"].holds and v["H6c"].holds
    plain, drop = (rec.arm_values("cma-long", a) for a in ("late-short", "late-short-output-p0.3"))
    c = {m: differ(plain[m], drop[m]) for m in ("M1", "M6", "M3", "M4", "start")}
    assert c["M1"]["difference"] < 0 and c["M1"]["beyond_spread"]
    assert c["start"]["difference"] > 0 and c["start"]["beyond_spread"]
    assert not c["M6"]["beyond_spread"] and not c["M3"]["beyond_spread"]
    assert c["M4"]["difference"] < 0 and c["M4"]["beyond_spread"]
    course_scale = rec.arm_values("cmr-schedule", "late-short")
    assert np.mean(plain["M4"]) > 3 * np.mean(course_scale["M4"])        # "several times" the course scale's
    loss = {a: np.mean(rec.arm_values("cma-long", a)["M3"]) for a in ("dense", "kp")}
    assert round(100 * (loss["kp"] / loss["dense"] - 1)) == 21          # "about 21% instead of 9%"
