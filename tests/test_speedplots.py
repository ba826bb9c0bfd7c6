"""Notebook 08 (inference speed): the claims it asserts, with its sizes, and dkp.bench.records' loader,
table formatters, target verdicts and figures. No timing is asserted anywhere.

Claims of 08 and where they are tested:
  fused step == LSTMLayer.forward on the 2600 x 1300 methods     ::test_fused_step_equals_the_layer
  bytes, multiply-adds, FLOP bounds, 0.5 FLOP/B for dense      ::test_bytes_macs_and_flop_bounds_of_the_paper_matrix
  what fits in the benchmark machine's L2 / L3                 ::test_cache_fit_on_the_benchmark_machine
  the committed rows describe the same matrices                ::test_committed_rows_match_the_matrices
  the verdict on the targets == the benchmark's stored one     ::test_targets_agree_with_the_benchmark
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from readable import assert_readable  # noqa: E402

from dkp.compression import shapes  # noqa: E402
from dkp.core.inference import LSTMStep  # noqa: E402
from dkp.core.lstm import LSTMLayer  # noqa: E402
from dkp.bench import matrices as bench_module  # noqa: E402
from dkp.bench import records as sp  # noqa: E402
from dkp.course.figures import speed as speed_figures  # noqa: E402
from dkp.kernels import arith  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "data" / "results" / "inference.json"
M, N = 2600, 1300


@pytest.fixture(scope="module")
def bench():
    return bench_module


@pytest.fixture(scope="module")
def methods(bench):
    return {mt.name: mt for mt in bench.gate_matrices(np.random.default_rng(0))}


@pytest.fixture(scope="module")
def record():
    return sp.load_results(RESULTS)


def test_bytes_macs_and_flop_bounds_of_the_paper_matrix(bench, methods):
    assert bench.SHAPE == (M, N)
    dense = methods["dense"]
    assert dense.n_bytes == 13_520_000 and dense.macs == M * N == 3_380_000
    assert 2 * dense.macs / dense.n_bytes == 0.5                          # batch-1 dense: 0.5 FLOP per byte
    expected = {"rank": ((520, 260, 5, 5), 682_500, 540_900), "flops": ((200, 650, 13, 2), 265_200, 520_104)}
    for prefer, (sides, macs, n_bytes) in expected.items():
        k = shapes.kron_shape((M, N), 25, prefer=prefer)
        assert (k.m1, k.n1, k.m2, k.n2) == sides and k.flops == macs
        kp = methods[bench.kp_label(k, prefer)]
        assert kp.macs == macs == min(arith.kron_costs(*sides)) and kp.n_bytes == n_bytes == 4 * k.n_params
        assert kp.flop_bound == M * N / macs < k.compression
        doped = methods[f"doped {bench.kp_label(k, prefer)[3:]} +1.0%"]
        assert doped.W.nnz == 33_800 and doped.macs == macs + 33_800
        assert doped.n_bytes == n_bytes + 33_800 * (4 + 4) + (M + 1) * 4
        assert doped.W.n_params == k.n_params + 33_800
        assert M * N / doped.W.n_params >= 20 * (1 - sp.RTOL)
    assert methods["kp 520x260 (x) 5x5 [rank]"].flop_bound == pytest.approx(4.952, abs=1e-3)
    assert methods["kp 200x650 (x) 13x2 [flops]"].flop_bound == pytest.approx(12.745, abs=1e-3)
    # intensities: the rank split does 5x dense's FLOPs per byte, the speed split 2x
    assert 2 * 682_500 / 540_900 == pytest.approx(2.52, abs=0.01)
    assert 2 * 265_200 / 520_104 == pytest.approx(1.02, abs=0.01)


def test_cache_fit_on_the_benchmark_machine(bench, methods, record):
    L2, L3 = sp.parse_size(record["machine"]["l2_cache"]), sp.parse_size(record["machine"]["l3_cache"])
    model_step = 2 * M * N * 4 + bench.VOCAB * bench.H * 4
    assert L2 < methods["dense"].n_bytes < L3 < model_step
    small = [mt for name, mt in methods.items() if name.startswith("kp ") or name.endswith("+1.0%")]
    assert len(small) == 4 and all(mt.n_bytes < L2 for mt in small)


def test_parse_size_and_fmt_bytes():
    assert sp.parse_size("1024K") == 2**20 and sp.parse_size("32M") == 2**25 and sp.parse_size("512") == 512
    assert sp.fmt_bytes(540_900) == "528 KiB" and sp.fmt_bytes(13_520_000) == "12.89 MiB"


def test_fused_step_equals_the_layer(methods):
    """08, section 1: the fused step (one Numba call for KP and doped KP) == the layer's step."""
    rng = np.random.default_rng(1)
    H = 650
    bias = rng.uniform(-0.05, 0.05, 4 * H).astype(np.float32)
    x = rng.standard_normal((1, H)).astype(np.float32)
    h0, c0 = rng.uniform(-0.5, 0.5, (1, H)).astype(np.float32), rng.standard_normal((1, H)).astype(np.float32)
    kinds = set()
    for mt in methods.values():
        layer = LSTMLayer(mt.W, bias, H, H)
        step = LSTMStep(layer)
        kinds.add(step.kind)
        _, (h_ref, c_ref), _ = layer.forward(x[None], (h0, c0))
        h, c = step(x, (h0, c0))
        for a, b in ((h, h_ref), (c, c_ref)):
            assert np.abs(a - b).max() / np.abs(b).max() < 2e-5, mt.name
    assert kinds == {"dense", "fused kron", "generic"}


def test_committed_rows_match_the_matrices(methods, record):
    rows = sp.select(record["rows"])
    assert {r["method"] for r in rows} == set(methods)
    assert {(r["cache"], r["variant"]) for r in rows} == {(c, v) for c in sp.CACHES for v in ("layer", "fused")}
    for r in rows:
        mt = methods[r["method"]]
        assert (r["weight_bytes"], r["macs_per_row"], r["n_params"]) == (mt.n_bytes, mt.macs, mt.W.n_params)
        assert r["flop_bound"] == pytest.approx(mt.flop_bound, rel=1e-12)
        assert r["flops_per_weight_byte"] == pytest.approx(2 * mt.macs / mt.n_bytes, rel=1e-12)
        # the identity of section 2: speed-up = FLOP bound x (GFLOP/s / the baseline's GFLOP/s), the
        # baseline being dense's fastest path in the row's cache mode, as the row names it
        dense = sp.baseline(record["rows"], r["cache"])
        assert r["baseline"] == f"dense {dense['variant']}"
        assert r["speedup"] == pytest.approx(r["flop_bound"] * r["gflops"] / dense["gflops"], rel=1e-9)


def test_targets_agree_with_the_benchmark(record):
    verdict = sp.target_results(record["rows"])
    assert [label for label, _, _ in verdict] == [t[0] for t in sp.TARGETS]
    stored = {(t["target"].split(" faster")[0], x["method"], x["cache"]): x for t in record["targets"]
              for x in t["results"] if x["variant"] == "fused"}
    n = 0
    for label, need, results in verdict:
        assert len(results) == 4                                 # 2 Kronecker splits x 2 cache modes
        for r in results:
            s = stored[label.split(" faster")[0], r["method"], r["cache"]]
            assert s["met"] == r["met"] == (r["speedup"] >= need)
            assert s["speedup"] == pytest.approx(r["speedup"], rel=1e-12)
            n += 1
    assert n == len(stored)


def test_target_verdict_on_synthetic_rows():
    def row(method, cache, variant, seconds, comp):
        return {"method": method, "cache": cache, "variant": variant, "batch": 1, "steps": 1, "seconds": seconds,
                "speedup": 100.0 / seconds, "flop_bound": 5.0, "compression": comp}
    rows = [row("dense", c, v, 100.0 if v == "layer" else 90.0, 1.0) for c in sp.CACHES for v in ("layer", "fused")]
    rows += [row("kp 1x1 (x) 1x1 [flops]", "warm", "fused", 8.5, 26.0),    # 10.6x dense's fused step
             row("kp 1x1 (x) 1x1 [flops]", "cold", "fused", 20.0, 26.0),
             row("kp 1x1 (x) 1x1 [rank]", "warm", "fused", 5.0, 24.0),     # fast but below 25x: not a candidate
             row("doped 1x1 (x) 1x1 [rank] +1.0%", "cold", "fused", 15.0, 19.99)]
    (_, _, doped), (_, _, kp) = sp.target_results(rows)
    assert [(r["cache"], r["met"]) for r in doped] == [("cold", True)]             # 90 / 15 = 6x
    assert [(r["cache"], r["met"]) for r in kp] == [("warm", True), ("cold", False)]  # over dense fused, 90
    assert sp.target_summary(kp) == "warm cache: met by KP flops; cold cache: not met"
    fastest_layer = [dict(r, seconds=80.0) if r["method"] == "dense" and r["variant"] == "layer" else r for r in rows]
    (_, _, _), (_, _, kp) = sp.target_results(fastest_layer)                        # the baseline is dense's fastest
    assert [(r["cache"], r["met"]) for r in kp] == [("warm", False), ("cold", False)]


def test_load_results_rejects_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"rows": []}')
    with pytest.raises(ValueError, match="command"):
        sp.load_results(path)


def test_tables_list_every_method(record):
    rows = record["rows"]
    structure, speed = sp.structure_table(rows), sp.speed_table(rows)
    names = list(dict.fromkeys(r["method"] for r in sp.select(rows)))
    assert len(structure.splitlines()) == len(speed.splitlines()) == 2 + len(names)
    assert all(name in structure for name in names)
    assert [ln.split("  ")[0].strip() for ln in speed.splitlines()[2:]] == [sp.short_name(n) for n in names]
    assert "warm: fused" in speed and "cold: fused" in speed
    assert "13,520,000" not in structure and "12.89 MiB" in structure and "0.50" in structure
    table = sp.text_table(("a", "bb"), [("x", 1), ("yyy", 22)])
    assert table.splitlines() == ["a    bb", "---  --", "x     1", "yyy  22"]


def test_short_names():
    assert sp.short_name("doped 200x650 (x) 13x2 [flops] +1.0%") == "dKP flops +1.0%"
    assert sp.short_name("kp 520x260 (x) 5x5 [rank]") == "KP rank"
    assert [sp.short_name(n) for n in ("dense", "lmf r=34", "hmd 52 rows + r=17", "pruned (csr)")] == [
        "dense", "LMF", "HMD", "pruned"]


def test_speedup_figure_is_labelled(record):
    fig = speed_figures.plot_speedup_vs_bound(record["rows"])
    assert fig._suptitle.get_text()
    assert len(fig.axes) == 2
    for ax, cache in zip(fig.axes, sp.CACHES):
        assert cache in ax.get_title() and ax.get_xlabel().strip()          # one panel per cache mode
        assert ax.get_xscale() == ax.get_yscale() == "log"
    assert fig.axes[0].get_ylabel().strip()
    assert len(fig.axes[-1].get_legend().get_texts()) == 5     # y = x, the two paths, the two targets
    x, y = fig.axes[0].lines[0].get_data()
    assert list(x) == list(y)                                   # the reference line is y = x
    plt.close(fig)


def test_roofline_is_labelled(record):
    fig = speed_figures.plot_roofline(record["rows"])
    ax = fig.axes[0]
    assert_readable(ax)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(legend) == 6 and "warm" in legend[0] and "cold" in legend[3]     # both cache modes
    # the diagonal through dense: GFLOP/s = GB/s x FLOP/B
    dense = next(r for r in sp.select(record["rows"], cache="warm", variant="fused") if r["method"] == "dense")
    (x0, x1), (y0, y1) = ax.lines[0].get_data()
    assert y0 / x0 == pytest.approx(dense["weight_gb_per_s"]) and y1 / x1 == pytest.approx(dense["weight_gb_per_s"])
    assert dense["gflops"] == pytest.approx(dense["weight_gb_per_s"] * dense["flops_per_weight_byte"], rel=1e-9)
    plt.close(fig)


def test_training_speed_record_table_and_figure(tmp_path):
    import json
    record = sp.load_train_speed(RESULTS.parent / "train_speed.json")
    text = sp.train_speed_table(record)
    assert len(text.splitlines()) == 2 + len(record["rows"]) and "dkp / PyTorch" in text
    assert len(sp.train_speed_markdown(record).splitlines()) == 2 + len(record["rows"])
    fig = speed_figures.plot_train_speed(record)
    for ax in fig.axes:
        assert ax.get_title() and ax.get_ylabel() and ax.get_legend() is not None
    plt.close(fig)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"command": "x", "machine": {}, "rows": [{"config": "small"}]}))
    with pytest.raises(ValueError, match="not a training-speed record"):
        sp.load_train_speed(bad)


def test_the_speed_ratio_is_taken_round_by_round():
    """dkp / PyTorch is the median of each round's ratio (the pair timed together), with its range;
    the matmul limit is the measured rate over the step's FLOPs per word."""
    row = {"config": "small", "threads": 1, "dkp": 5.0, "torch": 4.0, "phases": {k: 0.25 for k in sp.PHASES},
           "rounds": [{"dkp": 4.0, "torch": 4.0}, {"dkp": 6.0, "torch": 3.0}, {"dkp": 5.0, "torch": 4.0}],
           "flops_per_word": 2e6, "matmul_gflops": 100.0}
    assert sp.paired_ratio(row) == (1.25, 1.0, 2.0)
    assert sp.fmt_ratio(sp.paired_ratio(row)) == "1.25x (1.00-2.00)"
    even = dict(row, rounds=row["rounds"][:2])
    assert sp.paired_ratio(even) == (1.5, 1.0, 2.0)
    assert sp.paired_ratio(dict(row, torch=None)) is None and sp.fmt_ratio(None) == "-"
    limit, share = sp.matmul_limit(row)
    assert limit == 100e9 / 2e6 and share == {"dkp": 5.0 / limit, "torch": 4.0 / limit}
    assert sp.matmul_limit(dict(row, flops_per_word=None)) is None     # a compressed model, or an older record
    table = sp.train_speed_markdown({"rows": [row, dict(row, flops_per_word=None)]}).splitlines()
    assert table[2] == "| small | 1 | 5 | 4 | 1.25x (1.00-2.00) | 25% | 25% | 25% | 25% | 2.0 | 100 | 50,000 | 0% | 0% |"
    assert table[3].endswith("| 25% | - | - | - | - | - |")
