"""The verdicts notebooks 05 and 06 print, as stored in the committed notebooks, are the ones the
committed results give today: each notebook's verdict cells (marked `# VERDICTS`) print
`dkp.course.search.verdict_text` and `dkp.course.report.effect_text` lines, and this test recomputes every one
of them from data/results/ and finds it in the stored output. A rerun of the search that changes a
verdict fails here until the notebooks are re-executed (and their prose, which the notebooks'
asserts tie to the verdicts, is updated)."""
import json
from pathlib import Path

import numpy as np
import pytest

from dkp.course import search
from dkp.course.report import effect_text, effects, load_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "data" / "results"
NOTEBOOKS = {"05": "05_co_matrix_adaptation.ipynb", "06": "06_co_matrix_dropout.ipynb"}


def stored_verdict_output(name):
    nb = json.loads((ROOT / "notebooks" / NOTEBOOKS[name]).read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and "# VERDICTS" in "".join(c["source"])]
    assert cells, f"notebook {name} has no # VERDICTS cell"
    text = []
    for c in cells:
        assert c.get("outputs"), f"notebook {name}: a # VERDICTS cell has no stored output (re-execute it)"
        for o in c["outputs"]:
            text.append("".join(o.get("text", "")))
    return "\n".join(text)


def committed_search_verdicts():
    found = search.load(RESULTS / "cma-search")
    return {h["id"]: h for h in search.hypotheses(found, load_results(RESULTS).get("kp-loss"))}


@pytest.mark.parametrize("name, ids", [
    ("05", ("H1a", "H1b", "H1c", "H1d", "H1e", "H2a", "H2b", "H3a", "H3b", "H3c")),
    ("06", ("H4a:M1", "H4b:M6", "H4c:M3", "H4d:M4", "H4d:M5", "H4", "H5a", "H5b", "H5c", "H6a", "H6b", "H6c")),
])
def test_printed_search_verdicts_are_the_committed_ones(name, ids):
    out = stored_verdict_output(name)
    verdicts = committed_search_verdicts()
    for hid in ids:
        assert search.verdict_text(verdicts[hid]) in out, (name, hid)


@pytest.mark.parametrize("name, number", [("05", 3), ("06", 4)])
def test_printed_course_verdicts_are_the_committed_ones(name, number):
    results = load_results(RESULTS)
    e = next(e for e in effects(results) if e["claim"].startswith(f"{number}."))
    assert effect_text(e) in stored_verdict_output(name)


def test_notebook_05_section_4_numbers():
    """The numbers notebook 05's prose gives for the search's timing, density and init families."""
    found = search.load(RESULTS / "cma-search")
    v = {arm: search.values(found, "cma-timing", arm) for arm in ("late-short", "early-long")}
    rise = np.mean(v["late-short"]["M1"]) / np.mean(v["late-short"]["start"])
    assert 0.05 < rise < 0.2 and np.mean(v["late-short"]["M2"]) > 10
    d = [search.values(found, "cma-density", a) for a in ("late-short", "late-short-d0.001", "late-short-d0.0001")]
    m1, m4 = ([np.mean(x[k]) for x in d] for k in ("M1", "M4"))
    assert m1[0] < m1[1] < m1[2] and m4[0] > m4[1] > m4[2] and m4[2] < 0.01
    for arm in ("early-long", "late-short"):   # S from a dense model's residual: far more dependence on S
        zero, residual = (np.mean(search.values(found, "cma-init", a)["M4"]) for a in (arm, f"residual-{arm}"))
        assert residual > 1.0 > 0.2 > zero, arm


def test_notebook_06_section_5_numbers():
    # the longer scale (cma-long): what section 5's prose says, recomputed from the committed runs
    found = search.load(RESULTS / "cma-search")
    v = committed_search_verdicts()
    assert v["H6a"]["holds"] and v["H6b"]["holds"] and v["H6c"]["holds"]
    plain, drop = (search.values(found, "cma-long", a) for a in ("late-short", "late-short-output-p0.3"))
    c = {m: search.differ(plain[m], drop[m]) for m in ("M1", "M6", "M3", "M4", "start")}
    assert c["M1"]["difference"] < 0 and c["M1"]["beyond_spread"]
    assert c["start"]["difference"] > 0 and c["start"]["beyond_spread"]
    assert not c["M6"]["beyond_spread"] and not c["M3"]["beyond_spread"]
    assert c["M4"]["difference"] < 0 and c["M4"]["beyond_spread"]
    course = search.values(found, "cmr-schedule", "late-short")
    assert np.mean(plain["M4"]) > 3 * np.mean(course["M4"])            # "several times" the course scale's
    loss = {a: np.mean(search.values(found, "cma-long", a)["M3"]) for a in ("dense", "kp")}
    assert round(100 * (loss["kp"] / loss["dense"] - 1)) == 21          # "about 21% instead of 9%"
