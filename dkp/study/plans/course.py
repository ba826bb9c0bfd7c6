"""The course's study (data/results): its five effects, fixed before the runs as comparisons of named
arms (never the best of a sweep), the Kronecker split question, and the recipe search's table.

    E1  KP compression of the LSTM layers loses accuracy
    E2  doping wins it back
    E3  without co-matrix dropout, perplexity rises as S is annealed and the model depends on S
    E4  co-matrix dropout fixes it
    E5  doped KP beats pruning, low rank and hybrid at the same compression
    K1  the two Kronecker splits at 20x end apart
"""
from __future__ import annotations

from dkp.study import catalog
from dkp.study.engine import All, Compare, EveryRun, Hypothesis, Ref, compare
from dkp.study.records import MIN_SEEDS, stat
from dkp.study.report import Column, Study


def valid(family, arm):
    return Ref(family, arm, "valid")


def hypotheses():
    return [
        Hypothesis("E1", "KP compression of the LSTM layers loses accuracy (KP worse than dense beyond the seed spread)",
                   Compare(valid("kp-loss", "kp"), valid("kp-loss", "dense"), "higher", label="kp vs dense")),
        Hypothesis("E2", "doping wins it back: doped KP (with co-matrix dropout) within 5% of dense, and better than "
                         "KP beyond the spread",
                   All((Compare(valid("doping", "doped-kp-cmr"), valid("kp-loss", "dense"), "within", 0.05,
                                label="doped-kp-cmr vs dense"),
                        Compare(valid("doping", "doped-kp-cmr"), valid("doping", "kp"), "lower",
                                label="doped-kp-cmr vs kp")))),
        Hypothesis("E3", "without co-matrix dropout, perplexity rises as S is annealed (the anneal ends above the "
                         "lowest perplexity reached during it, in every seed) and the model depends on S (at the "
                         "end, perplexity with S switched off more than 10% above perplexity with S, in every seed)",
                   All((EveryRun((Ref("cma", "doped-kp", "anneal_rise"),), ">", 0.0,
                                 label="end of the anneal minus its lowest point"),
                        EveryRun((Ref("cma", "doped-kp", "s_off_cost"),), ">", 0.1,
                                 label="perplexity with S off / with S - 1")))),
        Hypothesis("E4", "co-matrix dropout fixes it: with co-matrix dropout (output, p = 0.3) the final perplexity "
                         "is lower beyond the spread",
                   Compare(valid("cmr", "output-p0.3"), valid("cmr", "doped-kp"), "lower", label="output-p0.3 vs doped-kp")),
        Hypothesis("E5", "doped KP beats pruning, low rank and hybrid at the same compression",
                   All(tuple(Compare(valid("methods", "doped-kp"), valid("methods", arm), "lower",
                                     label=f"doped-kp vs {arm}") for arm in ("prune", "lmf", "hmd")))),
        Hypothesis("K1", "at 20x, the Kronecker split of the fewest multiply-adds and the split of the largest "
                         "reachable rank end apart beyond the spread (no direction fixed)",
                   Compare(valid("kp-splits", "kp-flops"), valid("kp-splits", "kp"), "beyond", label="kp-flops vs kp")),
    ]


def split_verdict(result, plain="kp"):
    """The kp-splits question for arm `plain` (kp or doped-kp): {"rank", "flops": (mean, sd, n) of
    the final validation perplexity, the comparison's numbers, "verdict": "as accurate", "less
    accurate" or "more accurate"}, verdict None while either arm has fewer than MIN_SEEDS seeds."""
    a, b = stat(result, plain), stat(result, f"{plain}-flops")
    if not a or not b or min(a[2], b[2]) < MIN_SEEDS:
        return {"rank": a, "flops": b, "verdict": None}
    c = compare(a, b)
    verdict = ("as accurate" if not c["beyond_spread"] else
               "less accurate" if c["difference"] > 0 else "more accurate")
    return {"rank": a, "flops": b, **c, "verdict": verdict}


# The kinds of arm the `recipes` experiment tries, and the arm of a named experiment that uses each.
RECIPE_ARMS = {"dense": ("kp-loss", "dense"), "prune": ("methods", "prune"), "kp": ("kp-loss", "kp"),
               "lmf": ("methods", "lmf"), "hmd": ("methods", "hmd"), "doped-kp": ("cma", "doped-kp"),
               "doped-lmf": ("methods", "doped-lmf"), "doped-hmd": ("methods", "doped-hmd")}


def recipe_search(recipes, scale="course"):
    """One row per kind of arm of the `recipes` experiment: its final validation perplexity (mean
    over the seeds run) under SGD and under Adam, the optimizer the scale's experiments give that
    kind, and whether that is the better of the two (None while a recipe has no run)."""
    rows = []
    for kind, (experiment, arm) in RECIPE_ARMS.items():
        ppl = {}
        for recipe in ("sgd", "adam"):
            entry = (recipes or {}).get("arms", {}).get(f"{kind}-{recipe}") or {}
            ppl[recipe] = entry["summary"]["final_valid_ppl"]["mean"] if entry.get("summary") else None
        used = catalog.arms(experiment, scale)[arm].optimizer
        better = None if None in ppl.values() else ppl[used] == min(ppl.values())
        rows.append({"kind": kind, "sgd": ppl["sgd"], "adam": ppl["adam"], "used": used, "better": better})
    return rows


def _recipe_section(rec):
    recipes = rec.results.get("recipes")
    if not recipes:
        return []
    lines = ["### The recipe search", "", "| kind of arm | SGD | Adam | used | the better one |", "|---|---|---|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for r in recipe_search(recipes, recipes.get("scale", "course")):
        lines.append(f"| {r['kind']} | {fmt(r['sgd'])} | {fmt(r['adam'])} | {r['used']} | "
                     f"{ {True: 'yes', False: '**no**', None: '-'}[r['better']]} |")
    return lines + [""]


STUDY = Study(
    name="course", families=tuple(f for f in catalog.EXPERIMENTS if f != "recipes") + ("recipes",),
    columns=(Column("LSTM compression", "compression", 1, unit="x", per_arm=True),
             Column("final valid ppl", "valid"), Column("test ppl", "test")),
    hypotheses=hypotheses, sections=(_recipe_section,), verdict_heading="The effects")
