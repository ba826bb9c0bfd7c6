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


STUDY_FOLDERS = {"course": RESULTS, "whole-model": RESULTS / "whole-model", "cma-search": RESULTS / "cma-search",
                 "transformer": RESULTS / "transformer"}


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
                if all(len(rec.runs(f, a) or []) >= catalog.planned_seeds(f) for a in r["arms"])
                and set(r["arms"]) >= set(catalog.experiment_arms(f))}
    if not complete:
        pytest.skip(f"no family of {study.name} has run every arm and seed of its plan yet")
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


def training_speed_sweeps():
    """The three records of the same train_speed command (train_speed_earlier/sweep1.json, sweep2.json,
    then train_speed.json) and {(config, threads): [each one's paired dkp / PyTorch, median]}."""
    records = [sp.load_train_speed(RESULTS / "train_speed_earlier" / f"sweep{i}.json") for i in (1, 2)]
    records.append(sp.load_train_speed(RESULTS / "train_speed.json"))
    ratios = {}
    for record in records:
        for row in record["rows"]:
            ratios.setdefault((row["config"], row["threads"]), []).append(sp.paired_ratio(row)[0])
    return records, ratios


SWEEP_NAMES = ["sweep 1", "sweep 2", "sweep 3 (the record)"]


def test_the_readme_quotes_the_three_training_speed_sweeps_as_recorded():
    """The README's table of three sweeps is train_speed_earlier/sweep1.json, sweep2.json and
    train_speed.json, in that order, each the same command's output, taken from one commit."""
    records, _ = training_speed_sweeps()
    assert len({r["command"] for r in records}) == 1 and len({r["commit"] for r in records}) == 1
    readme = (RESULTS.parents[1] / "README.md").read_text()
    for row in sp.sweeps_markdown(records, SWEEP_NAMES).splitlines():
        assert row in readme, row


def test_the_training_speed_statements_hold_in_the_three_sweeps():
    """The README and notebook 08, section 6: on small dkp is ahead with one thread in every sweep and
    with two in two of three; on medium PyTorch is ahead in every sweep with one thread and with two;
    half of dkp's medium step is its LSTM layers; on small the decoder's products are the largest
    share."""
    records, ratios = training_speed_sweeps()
    assert min(ratios["small", 1]) >= 1
    assert sorted(r >= 1 for r in ratios["small", 2]) == [False, True, True]
    assert max(ratios["medium", 1]) < 1 and max(ratios["medium", 2]) < 1
    by = {(r["config"], r["threads"]): r for r in records[-1]["rows"]}
    assert all(0.45 <= by["medium", t]["phases"]["lstm"] <= 0.55 for t in (1, 2))
    assert all(max(by["small", t]["phases"], key=by["small", t]["phases"].get) == "decoder" for t in (1, 2))


def test_the_transformer_speed_record_and_what_the_readme_says_of_it():
    """data/results/transformer_speed.json and the two sweeps before it (one command, one commit):
    the README quotes the record's tables and the three sweeps' ratios; dkp's step is faster than
    PyTorch's in every round of every sweep, with 1 and 2 threads; the decoder's products are dkp's
    largest part; generation with the cache is an order of magnitude faster than re-running, and
    re-running dkp is ahead of PyTorch."""
    records = [sp.load_transformer_speed(RESULTS / "transformer_speed_earlier" / f"sweep{i}.json") for i in (1, 2)]
    records.append(sp.load_transformer_speed(RESULTS / "transformer_speed.json"))
    assert len({r["command"] for r in records}) == 1 and len({r["commit"] for r in records}) == 1
    assert records[-1]["command"].endswith("--json data/results/transformer_speed.json")
    readme = (RESULTS.parents[1] / "README.md").read_text()
    for row in (sp.transformer_speed_markdown(records[-1]) + "\n" + sp.sweeps_markdown(records, SWEEP_NAMES)).splitlines():
        assert row in readme, row
    for record in records:
        assert [(r["config"], r["threads"]) for r in record["rows"]] == [("transformer-small", 1), ("transformer-small", 2)]
        for r in record["rows"]:
            assert sp.paired_ratio(r)[1] >= 1.0, (r["threads"], sp.paired_ratio(r))   # every round
            g = r["generation"]
            assert g["dkp_cache"] >= 5 * g["dkp_full"] and g["dkp_full"] > g["torch_full"]
            assert max(r["phases"], key=r["phases"].get) == "decoder products"
            assert abs(r["first_loss"]["dkp"] - r["first_loss"]["torch"]) < 1e-4


def test_the_layer_records_and_what_the_readme_says_of_them():
    """softmax_speed.json and lstm_speed.json as the README quotes them: dkp's softmax layer is faster
    than PyTorch's everywhere, its softmax passes take about as long with two threads as with one;
    PyTorch's LSTM layer is about twice as fast at H = 650 with 1 and 2 threads, at H = 200 dkp's is
    behind with one thread and ahead with two; NumPy multiplies every product of the window at least
    as fast as torch.mm; PyTorch's whole layer (medium, one thread) runs above any single product."""
    soft = sp.load_softmax_speed(RESULTS / "softmax_speed.json")
    lstm = sp.load_lstm_speed(RESULTS / "lstm_speed.json")
    readme = (RESULTS.parents[1] / "README.md").read_text()
    for row in (sp.softmax_speed_markdown(soft) + "\n" + sp.lstm_speed_markdown(lstm) + "\n"
                + sp.lstm_products_markdown(lstm)).splitlines():
        assert row in readme, row
    by = {(r["config"], r["threads"]): r for r in soft["rows"]}
    for c in ("small", "medium"):
        assert all(by[c, t]["dkp"] < by[c, t]["torch"] for t in (1, 2))
        assert abs(by[c, 2]["softmax"] / by[c, 1]["softmax"] - 1) < 0.15
    layer = {(r["config"], r["threads"]): r for r in lstm["rows"]}
    assert all(1.6 < layer["medium", t]["dkp"] / layer["medium", t]["torch"] < 2.4 for t in (1, 2))
    assert layer["small", 1]["dkp"] > layer["small", 1]["torch"] and layer["small", 2]["dkp"] < layer["small", 2]["torch"]
    for r in lstm["rows"]:
        assert all(p["numpy"] >= p["torch"] for p in r["products_gflops"].values()), r["config"]
    medium = layer["medium", 1]
    whole = sp.lstm_window_flop(*medium["shape"]) / medium["torch"] / 1e9
    assert whole > max(max(p.values()) for p in medium["products_gflops"].values())


def test_a_second_inference_run_reproduces_the_record():
    """inference_earlier/rerun.json, a fresh run of the benchmark right after the record on the same
    machine: every batch-1 speed-up within 20% of the record's, and the same targets met."""
    record, rerun = sp.load_results(RESULTS / "inference.json"), sp.load_results(RESULTS / "inference_earlier" / "rerun.json")
    key = lambda r: (r["method"], r["variant"], r["batch"], r["steps"], r["cache"], bool(r.get("floor")))  # noqa: E731
    again = {key(r): r for r in rerun["rows"]}
    rows = [r for r in sp.select(record["rows"]) if r["method"] != "dense"]
    assert rows and all(abs(again[key(r)]["speedup"] / r["speedup"] - 1) < 0.2 for r in rows)
    met = lambda rec: [(x["method"], x["cache"], x["variant"], x["met"]) for t in rec["targets"] for x in t["results"]]  # noqa: E731
    assert met(record) == met(rerun)


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
