"""Inference-speed tables (notebook 08) from the rows `benchmarks/inference.py` measures and writes
with --json, and the project's speed targets; plain Python (no pandas). The figures are in
`dkp.course.figures.speed`.

A row (see the benchmark's docstring): {"method", "variant" ("layer" | "fused"), "batch", "steps",
"cache" ("warm" | "cold"), "seconds", "speedup" (over dense's fastest path at the same batch, cache
and run: the row's "baseline", "dense layer" or "dense fused"), "flop_bound", "macs_per_row",
"weight_bytes", "flops_per_weight_byte", "gflops", "compression", ...}; rows with "floor": True time
a tiny H = 4 layer (call overhead only).
"""
from __future__ import annotations

import json
import statistics

CACHES = ("warm", "cold")
# A compression "meets" a speed target's c when it is >= c * (1 - RTOL): the benchmark's matrices round
# to 24.995x ("25x", 520x260 kron 5x5) and 19.997x ("20x", with 1% doping), inside this 0.1%, a
# tighter rule than the 0.5% dkp.compression.shapes.RTOL lets through when it picks factor shapes.
RTOL = 1e-3
# The project's targets at batch 1, one step: (label, required speed-up, method picker)
TARGETS = (
    ("doped KP (>= 20x overall, 1% doping) >= 6x faster than dense", 6.0,
     lambda r: (r["method"].startswith("doped") and r["method"].endswith("+1.0%")
                and r["compression"] >= 20 * (1 - RTOL))),
    ("plain KP at 25x >= 10x faster than dense", 10.0,
     lambda r: r["method"].startswith("kp ") and r["compression"] >= 25 * (1 - RTOL)),
)


def _load_record(path, kind, row_fields=()):
    """A benchmark's JSON record, checked for the fields every record has (command, machine,
    rows) and, in each row, `row_fields`; `kind` names the benchmark in the error."""
    with open(path) as f:
        record = json.load(f)
    missing = sorted({"command", "machine", "rows"} - set(record))
    missing += sorted({f for r in record.get("rows", []) for f in row_fields if f not in r})
    if missing:
        raise ValueError(f"{path} is not {kind} record: no {missing}")
    return record


def load_results(path):
    """The JSON record `benchmarks/inference.py --json PATH` wrote (checked for its main fields)."""
    return _load_record(path, "an inference benchmark")


def select(rows, batch=1, steps=1, cache=None, variant=None, floor=False):
    """The rows of one batch and step count, optionally one cache mode and one code path."""
    return [r for r in rows if r["batch"] == batch and r["steps"] == steps and bool(r.get("floor")) == floor
            and (cache is None or r["cache"] == cache) and (variant is None or r["variant"] == variant)]


def short_name(method):
    """A label for plots: 'doped 200x650 (x) 13x2 [flops] +1.0%' -> 'dKP flops +1.0%',
    'kp 520x260 (x) 5x5 [rank]' -> 'KP rank', 'lmf r=34' -> 'LMF', 'pruned (csr)' -> 'pruned'."""
    if method.startswith(("kp ", "doped ")):
        split = method[method.index("[") + 1:method.index("]")]
        doping = method[method.index("]") + 1:]
        return ("dKP " if method.startswith("doped") else "KP ") + split + doping
    first = method.split(" ")[0]
    return first if first in ("dense", "pruned") else first.upper()


def parse_size(text):
    """A cache size as the kernel reports it ('1024K', '32M', '512') -> bytes."""
    text = str(text).strip().upper()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def fmt_bytes(b):
    return f"{b / 2**20:.2f} MiB" if b >= 2**20 else f"{b / 2**10:.0f} KiB"


def text_table(header, lines, align=None):
    """Columns padded to their widest entry; `align` a string of '<' / '>' per column."""
    cells = [list(map(str, header))] + [[str(c) for c in line] for line in lines]
    widths = [max(len(row[j]) for row in cells) for j in range(len(header))]
    align = align or "<" + ">" * (len(header) - 1)
    out = ["  ".join(f"{c:{a}{w}}" for c, a, w in zip(row, align, widths)) for row in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def structure_table(rows):
    """What each method stores and computes per input row (the same in every cache mode)."""
    lines, seen = [], set()
    for r in select(rows, cache=rows[0]["cache"] if rows else None, variant="layer"):
        if r["method"] in seen:
            continue
        seen.add(r["method"])
        lines.append((r["method"], f"{r['n_params']:,}", f"{r['compression']:.1f}x", fmt_bytes(r["weight_bytes"]),
                      f"{r['macs_per_row']:,}", f"{r['flops_per_weight_byte']:.2f}", f"{r['flop_bound']:.2f}x"))
    return text_table(("method", "params", "comp.", "weights", "MAC/row", "FLOP/B", "FLOP bound"), lines)


def baseline(rows, cache, batch=1, steps=1):
    """Dense's fastest path in one cache mode: the row every speed-up there divides by."""
    dense = [r for r in select(rows, batch, steps, cache=cache) if r["method"] == "dense"]
    return min(dense, key=lambda r: r["seconds"])


def speed_table(rows, caches=CACHES):
    """Batch 1, one step: per cache mode, the fused step's time and its speed-up over dense's fastest
    path (named in the header: dense's layer or fused step, whichever was faster in that mode)."""
    header, lines = ["method", "FLOP bound"], []
    for cache in caches:
        header += [f"{cache}: fused", f"x dense ({baseline(rows, cache)['variant']})"]
    for name in dict.fromkeys(r["method"] for r in select(rows)):
        line = [short_name(name), None]
        for cache in caches:
            fused = next(r for r in select(rows, cache=cache, variant="fused") if r["method"] == name)
            line[1] = f"{fused['flop_bound']:.2f}x"
            line += [f"{fused['seconds'] * 1e6:.1f} us", f"{baseline(rows, cache)['seconds'] / fused['seconds']:.2f}x"]
        lines.append(line)
    return text_table(header, lines)


def target_results(rows):
    """[(label, need, [result])]: each result {"method", "cache", "compression", "flop_bound", "speedup",
    "met"} for the fused step, its speed-up over dense's fastest path in the same cache mode."""
    out = []
    for label, need, pick in TARGETS:
        results = []
        for cache in dict.fromkeys(r["cache"] for r in select(rows)):
            base = baseline(rows, cache)
            for r in select(rows, cache=cache, variant="fused"):
                if pick(r):
                    x = base["seconds"] / r["seconds"]
                    results.append({"method": r["method"], "cache": cache, "compression": r["compression"],
                                    "flop_bound": r["flop_bound"], "speedup": x, "met": x >= need})
        out.append((label, need, results))
    return out


def target_summary(results):
    """One plain sentence per target from `target_results`' results: per cache mode, who meets it."""
    parts = []
    for cache in dict.fromkeys(r["cache"] for r in results):
        met = [short_name(r["method"]) for r in results if r["cache"] == cache and r["met"]]
        parts.append(f"{cache} cache: " + (f"met by {', '.join(met)}" if met else "not met"))
    return "; ".join(parts)


# --- training speed (benchmarks/train_speed.py --sweep --json) ---------------------------------------
def load_train_speed(path):
    """The record `benchmarks/train_speed.py --sweep --json PATH` wrote (checked for its main fields)."""
    return _load_record(path, "a training-speed", ("config", "threads", "dkp", "torch", "phases"))


def paired_ratio(row):
    """dkp / PyTorch of a training-speed row, round by round: each round times dkp and then PyTorch,
    so a change in the machine's load between rounds hits the pair alike and their ratio is the
    measurement. (median, lowest, highest) of the rounds' ratios; None without PyTorch."""
    if not row.get("torch"):
        return None
    ratios = [r["dkp"] / r["torch"] for r in row["rounds"]]
    return statistics.median(ratios), min(ratios), max(ratios)


def fmt_ratio(ratio):
    """'1.06x (1.01-1.27)' for paired_ratio's (median, lowest, highest); '-' for None."""
    return "-" if ratio is None else f"{ratio[0]:.2f}x ({ratio[1]:.2f}-{ratio[2]:.2f})"


def matmul_limit(row):
    """The words/s a training step made of nothing but its products would reach at the row's measured
    float32 matmul rate (benchmarks/train_speed.py: `flops_per_word`, `matmul_gflops`), and the share
    of it dkp and PyTorch reach: (limit, {"dkp": share, "torch": share or None}); None when the row
    has no arithmetic (a compressed model, or a record from before it was measured)."""
    if not row.get("flops_per_word") or not row.get("matmul_gflops"):
        return None
    limit = row["matmul_gflops"] * 1e9 / row["flops_per_word"]
    return limit, {k: (row[k] / limit if row.get(k) else None) for k in ("dkp", "torch")}


def train_speed_markdown(record):
    """The record as the Markdown table the README quotes: config, threads, dkp and PyTorch words/s
    (medians of the rounds), dkp / PyTorch (`paired_ratio`: median and range over the rounds), the share
    of dkp's step in each phase, and the step's arithmetic against the measured matmul rate."""
    lines = ["| config | threads | dkp words/s | PyTorch words/s | dkp / PyTorch: median (range) of the rounds "
             "| dkp's time in: LSTM | decoder products | update | rest (softmax, embedding, clip) "
             "| MFLOP per word | matmul GFLOP/s | its limit, words/s | dkp / limit | PyTorch / limit |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in record["rows"]:
        torch = f"{r['torch']:,.0f}" if r["torch"] else "-"
        cells = [r["config"], str(r["threads"]), f"{r['dkp']:,.0f}", torch, fmt_ratio(paired_ratio(r)),
                 *(f"{r['phases'][k]:.0%}" for k in PHASES)]
        lim = matmul_limit(r)
        if lim is None:
            cells += ["-"] * 5
        else:
            limit, share = lim
            cells += [f"{r['flops_per_word'] / 1e6:.1f}", f"{r['matmul_gflops']:.0f}", f"{limit:,.0f}",
                      f"{share['dkp']:.0%}", f"{share['torch']:.0%}" if share["torch"] else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def train_speed_table(record):
    """The record as a text table: config, threads, dkp and PyTorch words/s, their ratio (median and
    range of the rounds' ratios), the share of dkp's step in each phase, and dkp's and PyTorch's
    share of the words/s the measured matmul rate allows."""
    lines = []
    for r in record["rows"]:
        ph = r["phases"]
        torch = f"{r['torch']:,.0f}" if r["torch"] else "-"
        lim = matmul_limit(r)
        limit = ["-", "-"] if lim is None else [f"{lim[1]['dkp']:.0%}",
                                               f"{lim[1]['torch']:.0%}" if lim[1]["torch"] else "-"]
        lines.append([r["config"], str(r["threads"]), f"{r['dkp']:,.0f}", torch, fmt_ratio(paired_ratio(r)),
                      *(f"{ph[k]:.0%}" for k in PHASES), *limit])
    return text_table(["config", "threads", "dkp words/s", "PyTorch words/s", "dkp / PyTorch (rounds)",
                       *PHASE_LABELS, "dkp / limit", "PyTorch / limit"], lines)


# the phases benchmarks/train_speed.py --phases times, in its keys, and their short labels
PHASES = ("lstm", "decoder", "update", "rest (softmax, embedding, dropout, clip)")
PHASE_LABELS = ("LSTM", "decoder products", "update", "rest")


# --- the layers alone (benchmarks/softmax_speed.py, benchmarks/lstm_speed.py --sweep --json) -------------
def load_softmax_speed(path):
    """The record `benchmarks/softmax_speed.py --sweep --json PATH` wrote (checked for its main fields)."""
    return _load_record(path, "a softmax-speed", ("config", "threads", "dkp", "softmax", "torch"))


def load_lstm_speed(path):
    """The record `benchmarks/lstm_speed.py --sweep --json PATH` wrote (checked for its main fields)."""
    return _load_record(path, "an LSTM-layer speed", ("config", "threads", "shape", "dkp", "torch"))


def softmax_speed_markdown(record):
    """The softmax layer's record as the Markdown table the README quotes: per config and threads,
    dkp's time per step and its softmax passes' share of it, PyTorch's time, and the speed ratio."""
    lines = ["| config | threads | dkp ms per step | of which softmax | PyTorch ms per step | dkp / PyTorch (speed) |",
             "|---|---|---|---|---|---|"]
    for r in record["rows"]:
        torch = [f"{r['torch'] * 1e3:.1f}", f"{r['torch'] / r['dkp']:.2f}x"] if r["torch"] else ["-", "-"]
        lines.append(f"| {r['config']} | {r['threads']} | {r['dkp'] * 1e3:.1f} | {r['softmax'] * 1e3:.1f} | "
                     f"{torch[0]} | {torch[1]} |")
    return "\n".join(lines)


def lstm_window_flop(T, B, H):
    """The FLOPs of the three gate-matrix-sized products of one LSTM layer's window (forward, input
    and weight gradients): the numerator of `benchmarks/lstm_speed.py`'s rates."""
    return 3 * 2 * T * B * (4 * H) * (2 * H)


def lstm_speed_markdown(record):
    """One LSTM layer's record as the Markdown table the README quotes: per config and threads, the
    time of a window forward and back, dkp's and PyTorch's, their speed ratio and the rate of the
    window's three gate-matrix-sized products."""
    lines = ["| config | threads | dkp ms per window | PyTorch ms per window | dkp / PyTorch (speed) "
             "| dkp GFLOP/s | PyTorch GFLOP/s |", "|---|---|---|---|---|---|---|"]
    for r in record["rows"]:
        flop, t = lstm_window_flop(*r["shape"]), r["torch"]
        torch = [f"{t * 1e3:.1f}", f"{t / r['dkp']:.2f}x", f"{flop / t / 1e9:.1f}"] if t else ["-"] * 3
        lines.append(f"| {r['config']} | {r['threads']} | {r['dkp'] * 1e3:.1f} | {torch[0]} | {torch[1]} | "
                     f"{flop / r['dkp'] / 1e9:.1f} | {torch[2]} |")
    return "\n".join(lines)


def lstm_products_markdown(record):
    """The layer's products alone (`--products`), GFLOP/s in NumPy's BLAS and in PyTorch, one row per
    config, threads and product."""
    lines = ["| config | threads | product | NumPy GFLOP/s | PyTorch GFLOP/s |", "|---|---|---|---|---|"]
    for r in record["rows"]:
        for name, rate in r.get("products_gflops", {}).items():
            torch = f"{rate['torch']:.1f}" if rate["torch"] else "-"
            lines.append(f"| {r['config']} | {r['threads']} | {' '.join(name.split())} | {rate['numpy']:.1f} | {torch} |")
    return "\n".join(lines)


# --- the transformer (benchmarks/transformer_speed.py --sweep --json) ---------------------------------
# the parts of dkp's transformer step that `--phases` times, each part's own time
TRANSFORMER_PHASES = ("attention products", "attention", "attention heads", "LayerNorm", "MLP products", "GELU",
                      "dropout", "residuals", "decoder products", "softmax", "embedding", "clip", "update", "rest")


def load_transformer_speed(path):
    """The record `benchmarks/transformer_speed.py --sweep --json PATH` wrote (checked for its main fields)."""
    return _load_record(path, "a transformer-speed", ("config", "threads", "dkp", "torch", "generation", "rounds"))


def fmt_rate(v):
    """A rate (words or tokens per second) as the tables print it: '3,660'; '-' for None."""
    return "-" if v is None else f"{v:,.0f}"


def transformer_speed_markdown(record):
    """The transformer's record as the Markdown tables the README quotes: a training step's words/s,
    dkp's and PyTorch's, their paired ratio (median and range of the rounds), generation at batch 1
    in tokens/s (dkp with its key/value cache, dkp and PyTorch re-running the whole sequence), and
    dkp's step part by part."""
    lines = ["| config | threads | dkp words/s | PyTorch words/s | dkp / PyTorch: median (range) of the rounds "
             "| generation tokens/s: dkp cache | dkp re-run | PyTorch re-run |",
             "|---|---|---|---|---|---|---|---|"]
    for r in record["rows"]:
        g = r["generation"]
        lines.append(f"| {r['config']} | {r['threads']} | {fmt_rate(r['dkp'])} | {fmt_rate(r['torch'])} | "
                     f"{fmt_ratio(paired_ratio(r))} | {fmt_rate(g['dkp_cache'])} | {fmt_rate(g['dkp_full'])} | "
                     f"{fmt_rate(g['torch_full'])} |")
    rows = [r for r in record["rows"] if r.get("phases")]
    if rows:
        lines += ["", "| config | threads | " + " | ".join(TRANSFORMER_PHASES) + " |",
                  "|---|---|" + "---|" * len(TRANSFORMER_PHASES)]
        for r in rows:
            lines.append(f"| {r['config']} | {r['threads']} | "
                         + " | ".join(f"{r['phases'].get(k, 0.0):.0%}" for k in TRANSFORMER_PHASES) + " |")
    return "\n".join(lines)


def sweeps_markdown(records, names):
    """dkp / PyTorch in several sweeps of one benchmark (training-speed or transformer records): one
    row per config and thread count, the median ratio of each sweep's rounds with their range, in the
    order of `records`, headed by `names`."""
    keys = list(dict.fromkeys((r["config"], r["threads"]) for rec in records for r in rec["rows"]))
    lines = ["| config | threads | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for config, threads in keys:
        cells = [fmt_ratio(paired_ratio(next(r for r in rec["rows"] if (r["config"], r["threads"]) == (config, threads))))
                 for rec in records]
        lines.append(f"| {config} | {threads} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
