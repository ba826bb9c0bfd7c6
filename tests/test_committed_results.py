"""The committed results are what this code produces and what the course reads: every results file
under data/results holds the arms this code defines for its experiment, with their configs, seeds,
command and commit; the recipe search backs each arm's recipe; the inference benchmark's record is
complete. (Claims about what the results *show* are tested with the notebooks that make them.)"""
from pathlib import Path

import pytest

from dkp.core import io
from dkp.study import catalog
from dkp.bench import records as sp
from dkp.study.plans import STUDIES
from dkp.study.plans.course import recipe_search, split_verdict
from dkp.study.report import markdown, records, verdicts
from dkp.training.configs import normalized

RESULTS = Path(__file__).resolve().parents[1] / "data" / "results"


def test_each_arm_uses_the_better_recipe():
    """The committed recipe search: each kind of arm's recipe is the better of SGD and Adam for it."""
    path = RESULTS / "recipes.json"
    rows = recipe_search(io.load_json(path))
    assert [r["kind"] for r in rows] == ["dense", "prune", "kp", "lmf", "hmd", "doped-kp", "doped-lmf", "doped-hmd"]
    assert all(r["better"] for r in rows), rows


@pytest.mark.parametrize("name", catalog.EXPERIMENTS)
def test_committed_results_are_this_codes_arms(name):
    """data/results/NAME.json holds every arm of NAME with the config this code gives it, three
    seeds (one for the recipe search), so the notebooks' loaded numbers are those of these arms and
    rerunning an experiment skips what is committed."""
    result = io.load_json(RESULTS / f"{name}.json")
    assert result["experiment"] == name and result["scale"] == "course" and not result["quick"]
    for arm, config in catalog.arms(name).items():
        assert normalized(result["arms"][arm]["config"]) == config.to_dict(), arm
        assert result["arms"][arm]["seeds"] == list(range(1 if name == "recipes" else 3)), arm


def assert_family_file(result, name, configs):
    """A course-scale results file of experiment `name`, complete or growing: its command and commit,
    and arms with the configs this code gives them (`configs`), seeds among those its plan runs
    (0, 1, 2 unless `catalog.PLANNED_SEEDS` says more)."""
    assert result["experiment"] == name and result["scale"] == "course" and not result["quick"]
    assert result["command"].startswith(f"python -m dkp experiment {name} ") and len(result["commit"]) == 40
    for arm, entry in result["arms"].items():
        assert normalized(entry["config"]) == configs[arm].to_dict(), arm
        seeds = entry.get("seeds", [])                                  # an arm not run yet has none
        assert set(seeds) <= set(range(catalog.planned_seeds(name))) and [r["seed"] for r in entry.get("runs", [])] == seeds, arm


def assert_growing_family(folder, name, configs, plan, out_optional=False):
    """data/results/FOLDER/NAME.json, once run (complete or growing): assert_family_file, and its
    command names the folder with --out (a path a reader can run it with), unless `out_optional`
    and it has no --out (the family's default folder)."""
    path = RESULTS / folder / f"{name}.json"
    if not path.exists():
        pytest.skip(f"{name} has not been run yet ({plan} gives the order)")
    result = io.load_json(path)
    assert f"--out data/results/{folder}" in result["command"] or (out_optional and "--out" not in result["command"])
    assert_family_file(result, name, configs)


@pytest.mark.parametrize("name", catalog.SEARCH)
def test_committed_search_results_are_this_codes_arms(name):
    """data/results/cma-search/NAME.json (when run) holds arms of the search family NAME with the
    configs this code gives them, seeds among 0, 1, 2, and the command and commit that made it."""
    assert_growing_family("cma-search", name, catalog.search_arms(name), "data/results/cma-search/PLAN.md")


@pytest.mark.parametrize("name", catalog.WHOLE)
def test_committed_whole_model_results_are_this_codes_arms(name):
    """data/results/whole-model/NAME.json (when run, complete or growing) holds arms of NAME with the
    configs this code gives them, seeds among 0, 1, 2, and the command and commit that made it."""
    assert_growing_family("whole-model", name, catalog.whole_arms(name), "data/results/whole-model/PLAN.md",
                          out_optional=True)


def test_the_inference_record_is_complete():
    record = sp.load_results(RESULTS / "inference.json")
    assert record["command"] == "python benchmarks/inference.py --json data/results/inference.json"
    assert {"l2_cache", "l3_cache", "cpu", "cores"} <= set(record["machine"])
    assert record["rows"] and record["targets"]


def test_the_training_speed_record_is_complete_and_the_readme_quotes_it():
    """data/results/train_speed.json holds small and medium at 1 and 2 threads, dkp and PyTorch
    timed in one run, with the phase shares and the step's arithmetic against the measured matmul
    rate; the README's table is that record, number for number."""
    record = sp.load_train_speed(RESULTS / "train_speed.json")
    assert record["command"].startswith("benchmarks/train_speed.py --sweep --torch")
    assert record["command"].endswith("--json data/results/train_speed.json") and len(record["commit"]) == 40
    assert [(r["config"], r["threads"]) for r in record["rows"]] == [("small", 1), ("small", 2), ("medium", 1),
                                                                     ("medium", 2)]
    readme = (RESULTS.parents[1] / "README.md").read_text()
    for r in record["rows"]:
        assert r["torch"] and r["flops_per_word"] and r["matmul_gflops"], r["config"]
    for row in sp.train_speed_markdown(record).splitlines():
        assert row in readme, row
    by = {(r["config"], r["threads"]): r["dkp"] for r in record["rows"]}    # --threads: the default's speeds
    assert (f"threads: {by['small', 2]:,.0f} words/s on small and {by['medium', 2]:,.0f} on medium, against "
            f"{by['small', 1]:,.0f} and {by['medium', 1]:,.0f} with one") in " ".join(readme.split())


def test_the_softmax_speed_record_is_complete_and_the_readme_quotes_it():
    """data/results/softmax_speed.json holds the softmax layer of small and medium at 1 and 2 threads,
    dkp and PyTorch timed in one run; the README's table is that record, number for number."""
    record = io.load_json(RESULTS / "softmax_speed.json")
    assert record["benchmark"] == "softmax_speed" and len(record["commit"]) == 40
    assert record["command"] == ("benchmarks/softmax_speed.py --sweep --rounds 5 --reps 10 "
                                 "--json data/results/softmax_speed.json")
    assert [(r["config"], r["threads"]) for r in record["rows"]] == [("small", 1), ("small", 2), ("medium", 1),
                                                                     ("medium", 2)]
    readme = (RESULTS.parents[1] / "README.md").read_text()
    for r in record["rows"]:
        assert r["torch"] and 0 < r["softmax"] < r["dkp"], r
        assert r["dkp"] < r["torch"], r     # the README and notebook 08: dkp's softmax layer is the faster
        row = (f"| {r['config']} | {r['threads']} | {r['dkp'] * 1e3:.1f} | {r['softmax'] * 1e3:.1f} | "
               f"{r['torch'] * 1e3:.1f} | {r['torch'] / r['dkp']:.2f}x |")
        assert row in readme, row


STUDY_FOLDERS = {"course": RESULTS, "whole-model": RESULTS / "whole-model", "cma-search": RESULTS / "cma-search"}


@pytest.mark.parametrize("study", STUDIES, ids=lambda s: s.name)
def test_each_results_readme_quotes_the_report_for_every_complete_family(study):
    """The README of each results folder quotes `python -m dkp report FOLDER`: every table row of each
    family whose arms have all their planned seeds, and every verdict line whose hypothesis reads
    only complete families (a family still running is quoted once it completes)."""
    folder = STUDY_FOLDERS[study.name]
    rec = records(study, folder)
    readme = (folder / "README.md").read_text()
    text = markdown(study, folder)
    complete = {f for f, r in rec.results.items()
                if all(len(rec.runs(f, a) or []) >= catalog.planned_seeds(f) for a in r["arms"])}
    assert complete, study.name
    for family in complete & set(study.families):
        start = text.index(f"### {family}\n")
        table = text[start:text.index("\n### ", start + 1)]          # up to the next section
        rows = [line for line in table.splitlines() if line.startswith("| ")]
        assert rows and all(row in readme for row in rows), (family, [r for r in rows if r not in readme][:2])
    lines = {v.id: line for v, line in zip(verdicts(study, rec=rec), text.splitlines()[-len(study.hypotheses()):])}
    for h in study.hypotheses():
        if {r.family for r in h.refs()} <= complete:
            assert lines[h.id] in readme, lines[h.id]


def test_the_faster_kronecker_split_is_less_accurate_as_notebook_08_says():
    """08, section 7 (and the README): at the course scale the split of the fewest multiply-adds
    ends beyond the seed spread above the full-rank split at the same compression."""
    v = split_verdict(io.load_json(RESULTS / "kp-splits.json"))
    assert v["verdict"] == "less accurate" and 0.03 < v["relative"] < 0.1, v


def training_speed_sweeps(before_cell_kernel=False):
    """The three records of the same train_speed command (train_speed_earlier/sweep1.json,
    sweep2.json, then train_speed.json; or the three before the cell kernel, kept in
    train_speed_earlier/before-cell-kernel/) and {(config, threads): [each one's paired dkp / PyTorch]}."""
    if before_cell_kernel:
        folder = RESULTS / "train_speed_earlier" / "before-cell-kernel"
        records = [sp.load_train_speed(folder / f"sweep{i}.json") for i in (1, 2, 3)]
    else:
        records = [sp.load_train_speed(RESULTS / "train_speed_earlier" / f"sweep{i}.json") for i in (1, 2)]
        records.append(sp.load_train_speed(RESULTS / "train_speed.json"))
    ratios = {}
    for record in records:
        for row in record["rows"]:
            ratios.setdefault((row["config"], row["threads"]), []).append(sp.paired_ratio(row)[0])
    return records, ratios


def test_the_readme_quotes_the_three_training_speed_sweeps_as_recorded():
    """The README's run-to-run paragraph lists, per config and thread count, the paired dkp / PyTorch
    ratio of train_speed_earlier/sweep1.json, sweep2.json and train_speed.json, in that order, each
    the same command's output."""
    records, ratios = training_speed_sweeps()
    assert len({r["command"] for r in records}) == 1
    ratio = {k: [f"{v:.2f}x" for v in vs] for k, vs in ratios.items()}
    readme = " ".join((RESULTS.parents[1] / "README.md").read_text().split())
    for config in ("small", "medium"):
        one, two = (", ".join(ratio[config, t][:2]) + f" and {ratio[config, t][2]}" for t in (1, 2))
        assert f"{config}, {one} with one thread and {two} with two" in readme, (config, one, two)


def test_the_readme_compares_the_sweeps_before_and_after_the_cell_kernel_as_recorded():
    """The README's medium ratios before the cell kernel, and its share of the matmul limit on medium
    with one thread: the last sweep before it, the range of the three after."""
    before, ratios = training_speed_sweeps(before_cell_kernel=True)
    after, _ = training_speed_sweeps()
    assert {r["commit"] for r in before}.isdisjoint({r["commit"] for r in after})
    ratio = {k: [f"{v:.2f}x" for v in vs] for k, vs in ratios.items()}
    one, two = (", ".join(ratio["medium", t][:2]) + f" and {ratio['medium', t][2]}" for t in (1, 2))
    readme = " ".join((RESULTS.parents[1] / "README.md").read_text().split())
    assert f"gave for medium {one} with one thread and {two} with two" in readme
    share = lambda rec: sp.matmul_limit(next(r for r in rec["rows"] if (r["config"], r["threads"]) ==  # noqa: E731
                                            ("medium", 1)))[1]["dkp"]
    shares = sorted(round(100 * share(r)) for r in after)
    assert (f"from {100 * share(before[-1]):.0f}% of the matmul limit (the last sweep before it) to "
            f"{shares[0]}-{shares[-1]}% (these three)") in readme


def test_the_training_speed_statements_of_notebook_08_hold_in_the_three_sweeps():
    """08, section 6 (and the README): with one thread dkp is ahead of PyTorch on both configs in every
    sweep; with two, medium is behind or level and small depends on the run; neither reaches 90% of
    the matmul limit in the record."""
    records, ratios = training_speed_sweeps()
    record = records[-1]
    assert min(ratios["small", 1]) >= 1 and min(ratios["medium", 1]) >= 1
    assert min(ratios["medium", 2]) < 1 and max(ratios["medium", 2]) < 1.05
    assert min(ratios["small", 2]) < 1 < max(ratios["small", 2])
    assert all(share < 0.9 for row in record["rows"] for share in sp.matmul_limit(row)[1].values())


def test_the_course_states_what_the_replication_decides():
    """The search plan's addendum fixed, before its runs, the sentences the course states for each
    outcome of the replication (dkp.study.plans.cma_search.headline). Once its verdicts are all
    decided, the README and notebooks 00, 05 and 06 say them in those words."""
    import json as _json

    from dkp.study.plans import cma_search
    found = verdicts(cma_search.STUDY, RESULTS / "cma-search")
    said = cma_search.headline(found)
    if None in said.values():
        pytest.skip("the replication is still running: its verdicts are not all decided")
    root = RESULTS.parents[1]
    docs = {"README.md": (root / "README.md").read_text()}
    for name in ("00_course_map", "05_co_matrix_adaptation", "06_co_matrix_dropout"):
        nb = _json.loads((root / "notebooks" / f"{name}.ipynb").read_text())
        docs[name] = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for doc, text in docs.items():
        flat = " ".join(text.split())
        for what, sentence in said.items():
            if sentence:
                assert sentence in flat, (doc, what, sentence)


@pytest.mark.parametrize("name, epochs", [("small", 13), ("transformer-small", 12)])
def test_a_full_recipe_record_is_its_config_run_once_from_its_command(name, epochs):
    """data/results/NAME/metrics.json: the named config's full recipe, trained by the command it
    records, one entry per epoch, the final validation perplexity the last epoch's; the results
    README gives the final validation and test perplexities as recorded (at two decimals)."""
    from dkp.training.configs import CONFIGS
    m = io.load_json(RESULTS / name / "metrics.json")
    assert m["command"].startswith(f"python -m dkp train --config {name} --seed 0")
    assert normalized(m["config"]) == CONFIGS[name].to_dict() and m["epochs"] == epochs == CONFIGS[name].epochs
    assert len(m["valid_ppl"]) == len(m["train_ppl"]) == epochs and m["final_valid_ppl"] == m["valid_ppl"][-1]
    readme = " ".join((RESULTS / "README.md").read_text().split())
    assert f"{m['final_valid_ppl']:.2f}" in readme and f"{m['test_ppl']:.2f}" in readme, name
