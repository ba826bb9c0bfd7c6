"""The numbers the course states, each pinned to the record it comes from: what
tests/test_stated_numbers.py checks.

Where: README.md, every markdown file under docs/, the READMEs under data/results and the notebooks'
markdown cells (DOCUMENTS). What: decimals (122.8), percentages (21%) and numbers with thousands
separators (1,766), outside code and equations, read sentence by sentence (a table row with its
header). Plain integers (epochs, layers, seeds) are settings, left to the catalog's tests. Lines that
a record prints word for word are tied by equality instead: the tables and verdicts of
`python -m dkp report` and the speed tables of `dkp.bench.records` (PRINTED).

The sources (`sources()`) are the numbers the records give: each arm's mean, sd and per-seed value
of every metric its study reads, its runs' traced training loss (nats, by step) and S's share of the
energy per layer at the end; the difference, relative difference and the rule's threshold
(2 sqrt(sd_a^2 + sd_b^2)) of two arms' means in one family, and the relative difference of two
arms' final perplexities in different families of one study; the largest and smallest value of a
metric over a family's trained runs; every number a verdict prints, with the bound its check
declares; the scalar fields of the JSON records under data/results (traces and bookkeeping left
out); what a family's runs took (minutes of training, their sum and mean, and of wall time); the
speed records' paired ratios and matmul-limit shares; the configs, with each config's dense model's
parameters (in millions, and the embedding and softmax's share); PTB's vocabulary; the published
numbers the course quotes beside its own (PUBLISHED); and the numbers the course's code sets (the
notebooks' code cells and the package's modules, by file and line), for a sentence that says what
the code beside it does, pinned by hand only.

The ledger, tests/stated_numbers.json, pins each stated number (document, number, sentence) to one
source; the test fails on a stated number with no pin, and on a pin whose source no longer shows the
number at the precision it is written with. `python tests/record_numbers.py --update` pins new
numbers where the value identifies the source, and lists the rest for a person to pin (an entry
with "by": "hand") or to mend. What identifies a source, measured by moving each stated number by a
unit or three of its last digit and counting how often some source still matched
(`python tests/record_numbers.py --coincidence`; the shares below are of the documents when the
ledger was completed):
- a pair "a ± b" (a mean and its sd, from one source): matched by value, about 1% coincidences;
- a single number of 3 or more significant digits: matched by value among the sources the sentence
  names (an arm by its name or the words of its parts, both arms of a comparison, a record by
  name; `named`), about 4% coincidences at 4 digits and 23% at 3, so 3-digit pins were read by a
  person and mended where the source was not what the sentence states;
- a single number of 1 or 2 significant digits (1%, 0.3, 21%) identifies nothing by value: pinned
  automatically only to a setting (a config field the sentence names, a published number beside its
  paper), where near numbers still match 43% (1 digit) and 8% (2 digits) of the time, and otherwise
  by hand; the automatic pins of these were read by a person too.
"""
from __future__ import annotations

import itertools
import json
import math
import re
import sys
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "data" / "results"
# each study's folder of records (dkp.study.plans.STUDIES, by name)
STUDY_FOLDERS = {"course": RESULTS, "whole-model": RESULTS / "whole-model", "cma-search": RESULTS / "cma-search",
                 "transformer": RESULTS / "transformer"}
LEDGER = Path(__file__).with_name("stated_numbers.json")
DOCUMENTS = (["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))
             + sorted(str(p.relative_to(ROOT)) for p in RESULTS.rglob("README.md"))
             + sorted(f"notebooks/{p.name}" for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
SETTINGS = ("config/", "published/", "data/")            # where a 1- or 2-digit number may be pinned by value

NUMBER = re.compile(r"(?<![\w.\-/^])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d+)(%?)(?![\w.]*\d)")

# Numbers the course quotes from papers, beside its own: (paper, year) -> {what: value}. A line that
# quotes one must name the paper's first author.
PUBLISHED = {
    ("Zaremba", 2014): {"small valid": 120.7, "small test": 114.5, "medium valid": 86.2, "medium test": 82.7,
                        "large valid": 82.2, "large test": 78.4},
    ("Thakker", 2021): {"doped loss at 25x": 1.4, "pruning loss": 7.9, "HMD loss": 15, "LMF loss": 27,
                        "KP loss": 26},
    ("Edalati", 2021): {"KnGPT2 perplexity": 20.5, "DistilGPT2 perplexity": 23.7, "KnGPT2 hours": 6.5},
    ("Tahaei", 2021): {"MRPC with distillation": 87.5, "MRPC without": 70.8, "MNLI-m with distillation": 82.8,
                       "SST-2 with distillation": 91.0, "MNLI-m without": 80.7, "SST-2 without": 86.6,
                       "compression of the smaller model": 7.8, "compression of the smallest": 21},
    ("Chen", 2018): {"GroupReduce embedding compression": 6.6, "GroupReduce whole model": 12.8},
    ("Marcus", 1993): {"PTB train tokens": 929590, "PTB valid tokens": 73760, "PTB test tokens": 82430},
}


def prose(path):
    """The prose of a document: a markdown file, or a notebook's markdown cells."""
    path = ROOT / path
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text())
        return "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    return path.read_text()


def _strip_code(text):
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return "\n".join(l for l in text.splitlines() if not l.startswith("    "))


SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+(?=[A-Z(*`|\[]|\d)")
PAIR = re.compile(r"^\s*(?:±|\+-|\+/-)\s*$")


def units(path, printed=frozenset()):
    """The units a number is read in: each sentence of a paragraph, and each row of a table with its
    header row (its context). [(unit, context)], skipping the lines in `printed`, which the report
    prints word for word (the committed-results tests tie those)."""
    out = []
    for block in re.split(r"\n\s*\n", _strip_code(prose(path))):
        lines = [l.strip() for l in block.splitlines() if l.strip()]
        if lines and all(l.startswith("|") for l in lines):
            out += [(row, lines[0] + "\n" + row) for row in lines[1:] if row not in printed]
            continue
        text = " ".join(l for l in lines if l not in printed and not l.startswith("$$"))
        out += [(u, u) for u in SENTENCE_END.split(text) if u]
    return out


def stated(path, printed=frozenset()):
    """[(number text, unit, context, the number it is paired with as "a ± b" or None)] of the
    measured numbers in document `path`: decimals, percentages, numbers with thousands separators,
    outside code and equations."""
    out = []
    for unit, context in units(path, printed):
        text = re.sub(r"`[^`]*`", " ", re.sub(r"\$[^$]*\$", " ", unit))   # code and equations: not records
        found = [(m.group(1) + m.group(2), m.start(), m.end()) for m in NUMBER.finditer(text)
                 if m.group(2) or "." in m.group(1) or "," in m.group(1)]
        for i, (num, a, b) in enumerate(found):
            pair = None
            if i + 1 < len(found) and PAIR.match(text[b:found[i + 1][1]]):
                pair = ("mean", found[i + 1][0])
            elif i > 0 and PAIR.match(text[found[i - 1][2]:a]):
                pair = ("sd", found[i - 1][0])
            out.append((num, unit, context, pair))
    return out


def _put(out, key, v, *anchors):
    """Record source `key` with value `v`: a line may read it when it names one word of each group
    of `anchors` (an arm, both arms of a comparison, a record's name, ...)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        out[key] = (float(v), tuple(frozenset(a.lower() if isinstance(a, str) else a for a in g if a)
                                    for g in anchors))


# JSON fields that are traces or bookkeeping, never quoted on their own: a number matching one of
# them would be a coincidence, so they are no sources
TRACE = re.compile(r"loss_trace|\.cma\[|\.probes\[|\.rounds\[|\.seeds\[|\.density\[|\.lr\[|\.argv|\.machine\."
                   r"|\.git|\.date|\.load_average|\.wall_seconds|\.seconds|\.step\b")
# what a line must name for a record's number to be read from it (besides the arm names in the path)
RECORD_ANCHORS = {
    "train_speed": ("pytorch", "train_speed", "words/s", "sweep"),
    "softmax_speed": ("softmax",), "lstm_speed": ("lstm layer", "lstm_speed", "gflop/s"),
    "inference": ("inference", "batch 1", "dense", "fused"), "metrics": ("small", "zaremba", "sgd"),
}


# How prose names the parts of an arm's name: an arm is named where the sentence has its name, or a
# word of each of its parts (`doped-kp-teacher`: "doped", "KP" or "Kronecker", "teacher")
PART_WORDS = {
    "dense": ("dense",), "kp": ("kp", "kronecker"), "doped": ("doped", "doping"), "cmr": ("co-matrix dropout", "cmr"),
    "output": ("element-wise", "dropout"), "branch": ("branch",), "connect": ("dropconnect",),
    "prune": ("prun",), "lmf": ("lmf", "low-rank", "low rank"), "hmd": ("hmd", "hybrid"), "flops": ("faster", "flops"),
    "shrunk": ("shrunk",), "sgd": ("sgd",), "adam": ("adam",), "groupreduce": ("groupreduce",), "svd": ("svd",),
    "teacher": ("teacher",), "ilkd": ("distil", "ilkd"), "early": ("early",), "late": ("late",),
    "long": ("long", "slow"), "short": ("short", "quarter", "fast"), "norec": ("later", "norec"), "hold": ("hold",),
    "residual": ("residual",), "threshold": ("threshold", "waits"), "density": ("density",),
    "norescale": ("rescal",), "d0.001": ("0.1%",), "d0.0001": ("0.01%",),
    "p0.1": ("0.1",), "p0.3": ("0.3",), "p0.5": ("0.5",), "6x": ("6x",), "12x": ("12x",),
}


# How prose names a config field (besides its name): "S annealed to 1%" is the field `doping`
SETTING_WORDS = {
    "doping": ("density", "doped", "doping", "annealed to", "s keeping", "s at"), "anneal_start": ("anneal", "epoch"),
    "anneal_end": ("anneal", "epoch"), "cmr_p": ("p =", "p of", "dropout"), "cmr_threshold": ("at or below", "threshold"),
    "dropout": ("dropout",), "compression": ("compress", "x "), "vocab_compression": ("compress", "x "),
    "lr": ("learning rate", "adam", "sgd"), "init_scale": ("init", "uniform"), "clip": ("clip",),
    "lr_decay": ("decay",), "train_tokens": ("tokens",), "eval_tokens": ("tokens",), "weight_decay": ("decay",),
}


def _arm_anchors(name):
    """The groups a sentence must name to speak of arm `name`: its name as written (`doped-kp`,
    doped kp, ...) or the words of its parts (PART_WORDS)."""
    parts = name.split("-")
    forms = {name, name.replace("-", " "), name.replace("-", "_")}
    if all(p in PART_WORDS for p in parts):
        forms.add(tuple(PART_WORDS[p] for p in parts))
    return frozenset(forms)


def _json_scalars(obj, path, out, anchors):
    """The scalars of a JSON record; `anchors` the groups a line must name (an arm's name is added
    below its "arms" entry, a speed row's config below its "rows" entry)."""
    if isinstance(obj, dict):
        more = (_arm_anchors(obj["config"]),) if path.endswith("]") and isinstance(obj.get("config"), str) else ()
        for k, v in obj.items():
            arm = (_arm_anchors(k),) if path.endswith(".arms") else ()
            _json_scalars(v, f"{path}.{k}", out, anchors + more + arm)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _json_scalars(v, f"{path}[{i}]", out, anchors)
    elif not TRACE.search(path):
        _put(out, path, obj, *anchors)


def _checks(*checks):
    """Every check of a hypothesis' test tree (and of the checks reported beside it)."""
    for check in checks:
        yield check
        yield from _checks(*getattr(check, "children", ()))


def _code_settings(out):
    """The numbers the course's code sets (notebooks' code cells, the package's modules): a
    sentence that says what the code next to it does (the tokens an exercise reads, the factor a
    check spoils a gradient by, a function's default) is pinned to the line that sets it. Named by
    file and line, so a changed line shows; pinned by hand only (no sentence names their anchor)."""
    import ast
    files = [(f"notebooks/{p.name}", "\n".join(
                 "".join(c["source"]) for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "code"))
             for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    files += [(str(p.relative_to(ROOT)), p.read_text()) for p in sorted((ROOT / "dkp").rglob("*.py"))]
    for name, text in files:
        text = "\n".join("" if l.lstrip().startswith(("%", "!")) else l for l in text.splitlines())
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        lines = text.splitlines()
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and type(node.value) in (int, float)
                    and node.lineno == node.end_lineno):
                literal = lines[node.lineno - 1][node.col_offset:node.end_col_offset]
                _put(out, f"code/{name}: {lines[node.lineno - 1].strip()} [{literal}]", node.value,
                     {f"code of {name}"})


@lru_cache(maxsize=1)
def sources():
    """{source name: (value, anchors)} of every number the records give (see the module's docstring);
    `anchors` are the words of which a line (or its paragraph or table) must name one for the
    number to be read from this source."""
    from dkp.bench import records as sp
    from dkp.study import report
    from dkp.study.engine import leaves
    from dkp.study.metrics import run_values
    from dkp.study.plans import STUDIES
    from dkp.study.records import stats
    out = {}
    for study in STUDIES:
        rec = report.records(study, STUDY_FOLDERS[study.name])
        for family, result in rec.results.items():
            means, every_run = {}, {}
            for arm in result["arms"]:
                anchors = _arm_anchors(arm)
                for metric, vals in rec.arm_values(family, arm).items():
                    s = stats(vals)
                    if not s:
                        continue
                    _put(out, f"{family}/{arm}/{metric}/mean", s[0], anchors)
                    _put(out, f"{family}/{arm}/{metric}/sd", s[1], anchors)
                    means.setdefault(metric, {})[arm] = s
                    every_run.setdefault(metric, []).extend(vals)
                trained = {r["seed"] for r in rec.runs(family, arm) or []} - {s for s, _ in rec.failed(family, arm)}
                for r in rec.runs(family, arm) or []:
                    for metric, v in run_values(r, result["arms"][arm].get("config", {})).items():
                        _put(out, f"{family}/{arm}/seed {r['seed']}/{metric}", v, anchors)
                    for step, loss in r.get("loss_trace") or []:     # the traced training loss, in nats
                        _put(out, f"{family}/{arm}/seed {r['seed']}/training loss at step {step}", loss,
                             anchors, {"training loss", "nats"})
                shares = {}                        # S's share of the energy of the gate pre-activations, at the end
                for r in rec.runs(family, arm) or []:
                    if r["seed"] in trained and r.get("cma") and r["cma"][-1].get("final"):
                        for layer in r["cma"][-1].get("layers", []):
                            if "sparse_share" in layer:
                                shares.setdefault(layer["layer"], []).append(layer["sparse_share"])
                for layer, vals in shares.items():
                    _put(out, f"{family}/{arm}/S's share of the energy in layer {layer} at the end/mean",
                         stats(vals)[0], anchors, {"energy"})
            extreme = {"largest", "smallest", "at most", "at least", "every run", "within"}
            for metric, vals in every_run.items():       # the extremes over every trained run of the family
                _put(out, f"{family}/{metric}/largest of every run", max(vals), {family}, extreme)
                _put(out, f"{family}/{metric}/smallest of every run", min(vals), {family}, extreme)
            for metric, by_arm in means.items():
                for (a, (ma, sa, _)), (b, (mb, sb, _)) in itertools.permutations(by_arm.items(), 2):
                    anchors = (_arm_anchors(a), _arm_anchors(b))     # a comparison names both arms
                    _put(out, f"{family}/{b} vs {a}/{metric}/difference", mb - ma, *anchors)
                    if ma:
                        _put(out, f"{family}/{b} vs {a}/{metric}/relative", mb / ma - 1, *anchors)
                    _put(out, f"{family}/{b} vs {a}/{metric}/threshold", 2 * math.sqrt(sa ** 2 + sb ** 2), *anchors)
        finals = {(f, arm): s[0] for f in rec.results for arm in rec.results[f]["arms"]
                  for s in [stats(rec.values(f, arm, "M3"))] if s}
        for ((fa, a), ma), ((fb, b), mb) in itertools.permutations(finals.items(), 2):
            if fa != fb and ma:                  # two arms of different families of one study: final perplexity
                _put(out, f"{fb}/{b} vs {fa}/{a}/M3/relative", mb / ma - 1, _arm_anchors(a), _arm_anchors(b))
        if study.name == "transformer":                  # what the study cost, in all
            from dkp.study.plans import transformer
            _put(out, "transformer/what the study cost/hours of one core", transformer.cost(rec)[2], {"study"},
                 {"hour"})
        for v in report.verdicts(study, rec=rec):
            ids = {v.id, v.id.split(":")[0]}
            for o in leaves(v.outcome) + [x for r in v.reported for x in leaves(r)]:
                for k in ("difference", "threshold", "relative", "worst"):
                    if k in o.numbers:
                        _put(out, f"verdict {v.id}/{o.label}/{k}", o.numbers[k], ids)
                for i, jump in enumerate(o.numbers.get("jumps") or []):
                    for k in ("step", "epoch", "rise"):
                        if jump and jump.get(k) is not None:
                            _put(out, f"verdict {v.id}/{o.label}/jump {i}/{k}", jump[k], ids)
            for check in _checks(v.hypothesis.test, *v.hypothesis.reported):
                if getattr(check, "bound", None) is not None:
                    _put(out, f"verdict {v.id}/{check.label}/bound", check.bound, ids)
    for path in sorted(RESULTS.rglob("*.json")):
        rel = str(path.relative_to(RESULTS))
        anchors = {path.stem, path.stem.replace("-", " "), path.parent.name, *RECORD_ANCHORS.get(path.stem, ())}
        try:
            _json_scalars(json.loads(path.read_text()), rel, out, (anchors - {"results"},))
        except ValueError:
            continue
    for path in sorted(RESULTS.rglob("*.json")):         # what a family's runs took, in minutes
        try:
            record = json.loads(path.read_text())
        except ValueError:
            continue
        runs = [r for e in record.get("arms", {}).values() if isinstance(e, dict) for r in e.get("runs", [])
                if "seconds" in r] if isinstance(record, dict) else []
        if runs:
            rel = str(path.relative_to(RESULTS))
            anchors = ({path.stem, path.stem.replace("-", " ")}, {"minute", "hour", "wall", "took"})
            _put(out, f"{rel}/minutes of training, the runs' sum", sum(r["seconds"] for r in runs) / 60, *anchors)
            _put(out, f"{rel}/minutes of training a run, mean", sum(r["seconds"] for r in runs) / 60 / len(runs),
                 *anchors)
            if "wall_seconds" in record:
                _put(out, f"{rel}/minutes of wall time", record["wall_seconds"] / 60, *anchors)
        if isinstance(record, dict) and isinstance(record.get("seconds"), list):   # a train run's metrics.json
            rel = str(path.relative_to(RESULTS))
            _put(out, f"{rel}/minutes of training", sum(record["seconds"]) / 60,
                 {path.parent.name, path.parent.name.replace("-", " ")}, {"minute", "hour", "took"})
    for path in [RESULTS / "train_speed.json", *sorted((RESULTS / "train_speed_earlier").rglob("*.json"))]:
        record = sp.load_train_speed(path)
        for row in record["rows"]:
            anchors = (RECORD_ANCHORS["train_speed"], {row["config"]})
            median, lo, hi = sp.paired_ratio(row)
            name = f"{path.relative_to(RESULTS)}/{row['config']} {row['threads']} threads"
            for k, v in (("median ratio", median), ("lowest ratio", lo), ("highest ratio", hi)):
                _put(out, f"{name}/{k}", v, *anchors)
            if row.get("flops_per_word"):
                _put(out, f"{name}/MFLOP per word", row["flops_per_word"] / 1e6, *anchors[:1])
            limit = sp.matmul_limit(row)
            if limit:
                _put(out, f"{name}/matmul limit words per s", limit[0], *anchors)
                for who, share in limit[1].items():
                    _put(out, f"{name}/{who} share of the matmul limit", share or float("nan"), *anchors)
    for key, (v, anchors) in list(out.items()):          # bytes as MB, seconds as ms, as the tables print them
        if key.endswith(("n_bytes/mean", "n_bytes")):
            _put(out, f"{key} in MB", v * 1e-6, *anchors)
        if key.startswith(("softmax_speed.json", "lstm_speed.json", "inference.json")) and v < 10:
            _put(out, f"{key} in ms", v * 1e3, *anchors)
    from dkp.core.data import load_corpus
    from dkp.study import catalog, runner
    from dkp.training.configs import CONFIGS
    corpus = load_corpus("ptb")
    for split in ("train", "valid", "test"):
        _put(out, f"data/PTB {split} tokens", len(getattr(corpus, split)), {"ptb", "penn treebank", "tokens", "words"})
    _put(out, "data/PTB vocabulary words", len(corpus.vocab), {"ptb", "penn treebank", "vocabulary", "word"})
    for name, probes in (("course probes", runner.COURSE_PROBES), ("search probes", runner.SEARCH_PROBES),
                         ("quick course probes", runner.QUICK_COURSE_PROBES), ("quick", catalog.QUICK),
                         *((f"window {w}", dict(zip(("anneal_start", "anneal_end"), se))) for w, se in catalog.WINDOWS.items())):
        for k, v in probes.items():
            _put(out, f"config/{name}/{k}", v, {k, k.replace("_", " "), "probe", "slice"})
    for name, config in [*CONFIGS.items(), *((f"{s} scale", c["base"]) for s, c in catalog.SCALES.items())]:
        for k, v in config.to_dict().items():
            _put(out, f"config/{name}/{k}", v, {k, k.replace("_", " "), *SETTING_WORDS.get(k, ())})
    from dkp.training.evaluate import model_report
    from dkp.training.loop import build_model
    for name, config in CONFIGS.items():               # a config's dense model: its parameters, in millions
        model = build_model(config, len(corpus.vocab), seed=0)
        parts = {p["part"]: p["n_params"] for p in model_report(model)["parts"]}
        total, vocab = sum(parts.values()), parts["embed"] + parts.get("dec", 0)
        anchors = ({name}, {"parameter", " m "})
        _put(out, f"config/{name}/parameters in M", total * 1e-6, *anchors)
        _put(out, f"config/{name}/embedding and softmax parameters in M", vocab * 1e-6, *anchors)
        _put(out, f"config/{name}/embedding and softmax share of the parameters", vocab / total, *anchors)
    for family in catalog.ALL:
        for arm, config in catalog.experiment_arms(family).items():
            for k, v in config.to_dict().items():
                _put(out, f"config/{family}/{arm}/{k}", v, {k, k.replace("_", " "), *SETTING_WORDS.get(k, ())})
    for (author, year), numbers in PUBLISHED.items():
        for what, v in numbers.items():
            _put(out, f"published/{author} {year}/{what}", v, {author})
    _code_settings(out)
    return out


def shows(value, number):
    """Whether `value` is written as `number` (its precision, thousands separators, a percentage
    for a fraction; the sign aside, which prose spells out)."""
    pct = number.endswith("%")
    digits = number.rstrip("%").replace(",", "")
    places = len(digits.split(".")[1]) if "." in digits else 0
    v = abs(value) * (100 if pct and abs(value) < 5 else 1)
    return f"{v:.{places}f}" == digits or (pct and f"{abs(value):.{places}f}" == digits)


def _words(text):
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if len(w) > 1}


def _forms(v):
    v = abs(v)
    out = {f"{v:.{d}f}" for d in range(5)}
    if v < 5:
        out |= {f"{100 * v:.{d}f}%" for d in range(3)}
    return out | {f"{v:.{d}f}%" for d in range(3)}


@lru_cache(maxsize=1)
def _index():
    index = {}
    for k, (v, anchors) in sources().items():
        for form in _forms(v):
            index.setdefault(form, []).append((k, v, anchors))
    return index


def _plain(text):
    return re.sub(r"[\s_]+", " ", text.lower())


def named(anchors, context):
    """Whether `context` (the number's sentence, or its table row with the header) names a word of
    each of a source's anchor groups."""
    text = _plain(context)

    def says(a):                                   # a word, or a word of each part (_arm_anchors)
        return _plain(a) in text if isinstance(a, str) else all(any(_plain(w) in text for w in ws) for ws in a)
    return all(any(says(a) for a in group) for group in anchors)


SIBLING = {"/mean": "/sd", "/sd": "/mean", ".mean": ".std", ".std": ".mean"}


def _pairs_with(key, pair):
    """Whether source `key` can be the number of an "a ± b" whose other number is `pair`."""
    if pair is None:
        return True
    role, other = pair
    for end, sibling in SIBLING.items():
        if key.endswith(end) and (end in ("/mean", ".mean")) == (role == "mean"):
            twin = sources().get(key[:-len(end)] + sibling)
            return twin is not None and shows(twin[0], other)
    return False


def significant(number):
    """The significant digits a stated number is written with: 3 in 122, 122.8 has 4, 0.05 has 1."""
    return len(number.rstrip("%").replace(",", "").replace(".", "").lstrip("0"))


def candidates(number, context, pair=None):
    """Sources that give `number` at its precision and may be read in `context` (see the module's
    docstring): for a pair, whose twin gives the other number; for a single number, whose anchors
    the context names, and for a 1- or 2-digit one, a setting. Best first: most words shared with
    the context, then the shortest name."""
    found = []
    for k, v, anchors in _index().get(number.replace(",", ""), []):
        if not shows(v, number):
            continue
        if pair is not None:
            ok = _pairs_with(k, pair)
        else:
            ok = named(anchors, context) and (significant(number) >= 3 or k.startswith(SETTINGS) or ".config." in k)
        if ok:
            found.append((k, v))
    words = _words(context)
    return sorted(found, key=lambda kv: (-len(_words(kv[0]) & words), len(kv[0]), kv[0]))


def printed_lines():
    """The lines a record prints word for word, tied by equality (the committed-results tests and
    tests/test_stated_numbers.py compare them with the documents): the report's tables and verdicts,
    and the speed tables of dkp.bench.records."""
    from dkp.bench import records as sp
    from dkp.study import report
    from dkp.study.plans import STUDIES
    texts = [report.markdown(s, STUDY_FOLDERS[s.name]) for s in STUDIES]
    speed_tables = {"train_speed.json": (sp.load_train_speed, sp.train_speed_markdown),
                    "softmax_speed.json": (sp.load_softmax_speed, sp.softmax_speed_markdown),
                    "lstm_speed.json": (sp.load_lstm_speed, sp.lstm_speed_markdown, sp.lstm_products_markdown)}
    for name, (load, *tables) in speed_tables.items():
        if (RESULTS / name).exists():
            record = load(RESULTS / name)
            texts += [table(record) for table in tables]
    names = ["sweep 1", "sweep 2", "sweep 3 (the record)"]    # the README's tables of three sweeps
    for name, load, table in (("train_speed", sp.load_train_speed, None),
                              ("transformer_speed", sp.load_transformer_speed, sp.transformer_speed_markdown)):
        earlier = [RESULTS / f"{name}_earlier" / f"sweep{i}.json" for i in (1, 2)]
        if all(p.exists() for p in [*earlier, RESULTS / f"{name}.json"]):
            records = [load(p) for p in [*earlier, RESULTS / f"{name}.json"]]
            texts.append(sp.sweeps_markdown(records, names))
            if table is not None:
                texts.append(table(records[-1]))
    return frozenset(l.strip() for t in texts for l in t.splitlines() if l.strip())


def load_ledger():
    return json.loads(LEDGER.read_text()) if LEDGER.exists() else []


def update():
    """Pin the stated numbers not in the ledger yet; print those no source gives. Entries whose
    sentence is gone are dropped."""
    printed = printed_lines()
    old = {(e["doc"], e["number"], e["unit"]): e for e in load_ledger()}
    ledger, missing, seen = [], [], set()
    for doc in DOCUMENTS:
        for number, unit, context, pair in stated(doc, printed):
            key = (doc, number, unit)
            if key in seen:
                continue
            seen.add(key)
            if key in old:
                ledger.append(old[key])
                continue
            found = candidates(number, context, pair)
            if found:
                ledger.append({"doc": doc, "number": number, "unit": unit, "source": found[0][0]})
            else:
                missing.append(key)
    LEDGER.write_text(json.dumps(ledger, indent=1, ensure_ascii=False) + "\n")
    for doc, number, unit in missing:
        print(f"{doc}: {number} has no source: {unit[:160]}")
    print(f"{len(ledger)} numbers pinned, {len(missing)} with no source")


def suggest():
    """For each stated number with no pin, the sources that show it at its precision, whatever the
    sentence names (at most 6, best first): what a person reads to pin it by hand or mend it."""
    pinned = {(e["doc"], e["number"], e["unit"]) for e in load_ledger()}
    printed = printed_lines()
    for doc in DOCUMENTS:
        for number, unit, context, pair in stated(doc, printed):
            if (doc, number, unit) in pinned:
                continue
            found = [(k, v) for k, v, _ in _index().get(number.replace(",", ""), []) if shows(v, number)]
            words = _words(context)
            found.sort(key=lambda kv: (-len(_words(kv[0]) & words), len(kv[0])))
            print(f"{doc}: {number} in: {unit}")
            for k, v in found[:6]:
                print(f"    {k} = {v:g}")


def coincidence(seed=0):
    """How often a stated number, moved by 1 to 3 units of its last digit, still finds a source by
    the rules of `candidates` (its twin moved too for a pair): {kind: (numbers, share that still
    match)}, kind "pair" or "single, N digits" (N = 1, 2, 3, 4 or more). What the module's docstring
    quotes; `python tests/record_numbers.py --coincidence` prints it."""
    import random
    rng = random.Random(seed)

    def near(number):
        digits = number.rstrip("%").replace(",", "")
        places = len(digits.split(".")[1]) if "." in digits else 0
        v = abs(float(digits) + rng.choice([1, -1, 2, -2, 3]) * 10 ** -places)
        return f"{v:.{places}f}" + ("%" if number.endswith("%") else "")

    counts, hits = {}, {}
    printed = printed_lines()
    for doc in DOCUMENTS:
        for number, unit, context, pair in stated(doc, printed):
            kind = "pair" if pair else f"single, {min(significant(number), 4)} digits"
            moved = None if pair is None else (pair[0], near(pair[1]))
            counts[kind] = counts.get(kind, 0) + 1
            hits[kind] = hits.get(kind, 0) + bool(candidates(near(number), context, moved))
    return {k: (counts[k], hits[k] / counts[k]) for k in sorted(counts)}


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if sys.argv[1:] == ["--update"]:
        update()
    elif sys.argv[1:] == ["--suggest"]:
        suggest()
    elif sys.argv[1:] == ["--coincidence"]:
        for kind, (n, share) in coincidence().items():
            print(f"{kind}: {n} numbers, {share:.0%} of them moved still match a source")
    else:
        print(__doc__)
