"""The benchmark scripts run: a tiny, untimed pass of each one's measuring code (the times they
print are never asserted; the committed records are checked in test_committed_results.py)."""
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_softmax_speed_runs_and_records_its_split():
    out = subprocess.run([sys.executable, str(BENCH / "softmax_speed.py"), "--config", "tiny", "--rounds", "1",
                          "--reps", "1", "--threads", "1", "--record", "-"],
                         check=True, capture_output=True, text=True).stdout
    record = json.loads(out.strip().splitlines()[-1])
    assert record["config"] == "tiny" and record["threads"] == 1
    assert 0 < record["products"] < record["dkp"] and 0 < record["softmax"] < record["dkp"]
    assert abs(record["products"] + record["softmax"] - record["dkp"]) < 1e-9


def test_softmax_speed_refuses_bad_arguments():
    run = subprocess.run([sys.executable, str(BENCH / "softmax_speed.py"), "--rounds", "0"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "--rounds and --reps must be >= 1, got 0" in run.stderr


def test_lstm_speed_runs_with_every_product_of_the_window():
    out = subprocess.run([sys.executable, str(BENCH / "lstm_speed.py"), "--config", "tiny", "--rounds", "1",
                          "--reps", "1", "--threads", "1", "--products"],
                         check=True, capture_output=True, text=True).stdout
    assert "config tiny: one layer" in out and "ms per window" in out
    for name in ("input projection", "recurrent step", "recurrent grad", "input grad", "weight grad"):
        assert name in out, name


def test_the_shared_timing_helpers_leave_numpy_unloaded():
    """The scripts import benchmarks/timing.py before they set the BLAS's thread count from
    --threads, which only works while NumPy is not loaded yet."""
    code = "import sys; sys.path.insert(0, sys.argv[1]); import timing; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code, str(BENCH)], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "False"


def test_a_sweep_runs_each_config_in_a_child_and_collects_its_record():
    """benchmarks/timing.sweep_rows, which train_speed.py and softmax_speed.py --sweep share, on a
    one-row sweep of the tiny config."""
    sys.path.insert(0, str(BENCH))
    try:
        from timing import sweep_rows
    finally:
        sys.path.remove(str(BENCH))
    rows = sweep_rows(BENCH / "softmax_speed.py", ["--rounds", "1", "--reps", "1"], sweep=[("tiny", 1)])
    assert [(r["config"], r["threads"]) for r in rows] == [("tiny", 1)] and rows[0]["dkp"] > 0


def test_train_speed_counts_the_steps_arithmetic_and_the_matmul_limit():
    """The dense model's FLOPs per word are its products' (three uses of each gate matrix and of the
    decoder), and the limit the record implies is the measured matmul rate over them."""
    out = subprocess.run([sys.executable, str(BENCH / "train_speed.py"), "--config", "tiny", "--steps", "1",
                          "--rounds", "1", "--threads", "1", "--record", "-"],
                         check=True, capture_output=True, text=True).stdout
    record = json.loads(out.strip().splitlines()[-1])
    from dkp.bench.records import matmul_limit
    from dkp.training.configs import get_config
    c = get_config("tiny")
    H, L = c.hidden, c.layers
    assert record["flops_per_word"] == 3 * 2 * (L * 4 * H * 2 * H + 10000 * H)
    assert record["matmul_gflops"] > 0 and record["dkp"] > 0
    limit, share = matmul_limit(record)
    assert limit == record["matmul_gflops"] * 1e9 / record["flops_per_word"]
    assert share["dkp"] == record["dkp"] / limit and share["torch"] is None
    assert "MFLOP per word" in out and f"dkp reaches {share['dkp']:.0%} of it" in out


def test_train_speed_leaves_the_arithmetic_out_for_a_compressed_model():
    out = subprocess.run([sys.executable, str(BENCH / "train_speed.py"), "--config", "tiny", "--steps", "1",
                          "--threads", "1", "--structure", "kp", "--record", "-"],
                         check=True, capture_output=True, text=True).stdout
    record = json.loads(out.strip().splitlines()[-1])
    assert record["flops_per_word"] is None and record["matmul_gflops"] is None
    assert "MFLOP per word" not in out


def test_transformer_speed_times_the_same_model_in_both_and_splits_dkps_step():
    """One step of transformer-tiny each side, generation of two tokens, dkp's phases: the PyTorch
    model (when PyTorch is installed) gives dkp's loss from dkp's parameters, and the phases (each
    part's own time) with the rest make the whole epoch."""
    out = subprocess.run([sys.executable, str(BENCH / "transformer_speed.py"), "--config", "transformer-tiny",
                          "--steps", "1", "--rounds", "1", "--threads", "1", "--gen-tokens", "2", "--phases",
                          "--record", "-"], check=True, capture_output=True, text=True).stdout
    record = json.loads(out.strip().splitlines()[-1])
    assert record["config"] == "transformer-tiny" and record["threads"] == 1 and record["dkp"] > 0
    phases = record["phases"]
    assert set(phases) >= {"attention", "LayerNorm", "GELU", "softmax", "embedding", "update", "rest"}
    assert abs(sum(phases.values()) - 1) < 1e-9 and all(v >= 0 for v in phases.values())
    assert record["generation_tokens"] == {"prompt": 8, "new": 2} and record["generation"]["dkp_cache"] > 0
    from dkp.training.configs import get_config
    c = get_config("transformer-tiny")
    assert record["flops_per_word"] == 3 * 2 * (c.layers * (12 * c.hidden ** 2 + 2 * c.bptt * c.hidden)
                                                + 10000 * c.hidden)
    if record["torch"] is not None:
        assert record["torch"] > 0 and record["generation"]["torch_full"] > 0 and "dkp / torch:" in out
        assert abs(record["first_loss"]["dkp"] - record["first_loss"]["torch"]) < 1e-4


def test_transformer_speed_refuses_bad_arguments():
    run = subprocess.run([sys.executable, str(BENCH / "transformer_speed.py"), "--steps", "0"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "--rounds, --steps and --gen-tokens must be >= 1" in run.stderr
    run = subprocess.run([sys.executable, str(BENCH / "transformer_speed.py"), "--json", "x.json"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "--json needs --sweep" in run.stderr


def test_reproducibility_finds_a_run_of_this_commit_the_same_bit_for_bit(tmp_path):
    """A short run trained by `train` here (the fast path) is the script's fast run, number for number and
    parameter for parameter; the script records its reference run beside it."""
    subprocess.run([sys.executable, "-m", "dkp", "train", "--config", "small", "--seed", "1", "--epochs", "1",
                    "--train-tokens", "2000", "--out", str(tmp_path / "run")], check=True, capture_output=True)
    subprocess.run([sys.executable, str(BENCH / "reproducibility.py"), "--against", str(tmp_path / "run" / "metrics.json"),
                    "--against-checkpoint", str(tmp_path / "run" / "checkpoint.npz"), "--json",
                    str(tmp_path / "record.json")], check=True, capture_output=True)
    record = json.loads((tmp_path / "record.json").read_text())
    fast = record["runs"]["fast"]
    assert fast["numbers_bit_for_bit"] and fast["params_bit_for_bit"] and fast["largest_param_difference"] == 0.0
    assert record["tokens"] == 2000 and record["seed"] == 1 and set(record["runs"]) == {"fast", "reference"}
    run = subprocess.run([sys.executable, str(BENCH / "reproducibility.py"), "--against", str(tmp_path / "record.json")],
                         capture_output=True, text=True)
    assert run.returncode != 0 and "must be a one-epoch run of the small config" in run.stderr
