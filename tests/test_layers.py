"""The package's architecture holds: imports only point down the layers (kernels, core, compression,
training, bench, study, course, then the command line), with no cycle, also not through imports inside functions;
only the kernels import numba; nothing imports `benchmarks`; every module is small and opens with
the one idea it holds."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dkp"
LAYERS = ("kernels", "core", "compression", "training", "bench", "study", "course", "__main__")
MAX_LINES = 400


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(name):
    """The rank of a dkp module's layer; the package's own __init__ (a docstring) sits below all."""
    parts = name.split(".")
    return -1 if len(parts) == 1 else LAYERS.index(parts[1])


def imported(path, known):
    """The dkp modules (and other top-level packages) a file imports, anywhere in it."""
    out = set()
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known)
    return out


@pytest.fixture(scope="module")
def graph():
    known = modules()
    return {name: {m for m in imported(path, known) if m in known and m != name} |
            {m for m in imported(path, known) if not m.startswith("dkp")}
            for name, path in known.items()}


def test_every_module_is_in_a_layer(graph):
    for name in graph:
        assert name == "dkp" or name.split(".")[1] in LAYERS, f"{name} is in no layer of {LAYERS}"


def test_imports_only_point_down(graph):
    upward = [(a, b) for a, deps in graph.items() for b in deps
              if b.startswith("dkp") and layer(b) > layer(a)]
    assert not upward, f"upward imports (module -> what it imports): {upward}"


def test_no_import_cycle(graph):
    deps = {a: {b for b in bs if b in graph} for a, bs in graph.items()}
    state, stack = {}, []

    def visit(a):
        state[a] = "open"
        stack.append(a)
        for b in sorted(deps[a]):
            if state.get(b) == "open":
                raise AssertionError(f"import cycle: {' -> '.join(stack[stack.index(b):] + [b])}")
            if b not in state:
                visit(b)
        stack.pop()
        state[a] = "done"

    for a in sorted(deps):
        if a not in state:
            visit(a)


def test_only_the_kernels_import_numba_and_nothing_imports_benchmarks(graph):
    numba = sorted(a for a, deps in graph.items() if any(d == "numba" or d.startswith("numba.") for d in deps))
    assert numba and all(a.startswith("dkp.kernels.") for a in numba), numba
    bench = sorted(a for a, deps in graph.items() if any(d.split(".")[0] == "benchmarks" for d in deps))
    assert not bench, f"the package imports benchmarks/: {bench}"


def test_the_shape_arithmetic_loads_without_numba():
    code = "import sys, dkp.compression.shapes; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout.strip()
    assert out == "False"


def test_modules_are_small_and_open_with_their_idea():
    for name, path in modules().items():
        text = path.read_text()
        assert len(text.splitlines()) <= MAX_LINES, f"{name} has {len(text.splitlines())} lines (> {MAX_LINES})"
        assert text.startswith('"""') and len(text.splitlines()[0].strip('"')) > 20, \
            f"{name} does not open with a docstring saying what it holds"


def test_the_study_imports_no_teaching_code(graph):
    """The study pipeline (experiments, runner, records, the hypotheses engine) stands without the
    course: nothing under dkp.study imports dkp.course (a layer above it, so this is the rule above
    stated for the one pair a reader asks about)."""
    study = {a: [b for b in deps if b.startswith("dkp.course")] for a, deps in graph.items() if a.startswith("dkp.study")}
    assert study and not any(study.values()), study


def test_a_planted_upward_import_is_caught(tmp_path):
    """The walk sees imports inside functions: a core module importing the course would be flagged."""
    pkg = tmp_path / "dkp"
    (pkg / "core").mkdir(parents=True)
    (pkg / "course").mkdir()
    (pkg / "core" / "x.py").write_text('"""x."""\ndef f():\n    from dkp.course import y\n')
    (pkg / "course" / "y.py").write_text('"""y."""\n')
    known = {"dkp.core.x": pkg / "core" / "x.py", "dkp.course.y": pkg / "course" / "y.py"}
    global PACKAGE
    saved, PACKAGE = PACKAGE, pkg
    try:
        deps = imported(known["dkp.core.x"], known)
    finally:
        PACKAGE = saved
    assert "dkp.course.y" in deps and layer("dkp.course.y") > layer("dkp.core.x")
