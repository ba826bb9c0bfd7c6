"""Build the course website: every notebook executed, its plots and widgets in the pages.

    python docs/build_site.py                      # the whole site: README, notebooks 00-11, background
    python docs/build_site.py --only 02 --only 05  # README and those notebooks (CI, a quick look)
    python docs/check_site.py                      # then check it in a browser

The site is Sphinx with MyST-NB and the book theme (docs/conf.py): MyST-NB executes each notebook
in a fresh kernel, in its own folder and as committed (FULL = False), renders the executed copy
into the page and leaves the .ipynb files untouched; ipywidgets' state is saved with the executed
notebook and the pages draw the widgets from it. The pages go to docs/_build/html (open
docs/_build/html/index.html). A notebook cell that raises fails the build, naming the notebook and
the cell (--allow-errors builds the page anyway, with the traceback in it).

The pages' JavaScript is served from the site itself, so they work without a network: MathJax 3,
RequireJS and ipywidgets' HTML manager, at the pinned versions of VENDORED, are fetched from the npm
registry by `npm pack` on the first build (npm's cache keeps them) and unpacked under
docs/_build/vendor.

Notebooks that run --quick experiments share their runs within one build, as under pytest: the
build points $DKP_QUICK_RESULTS at a temporary folder (or keeps the one already set).

Why not Jupyter Book 2 (mystmd): it installs from PyPI and executes notebooks, but its HTML themes
(book-theme, article-theme) are not packages on PyPI or npm; every build downloads one through
api.mystmd.org, so it cannot build pages on a machine that reaches only the package registries.
Sphinx with MyST-NB is the engine Jupyter Book 1 ran on, and everything it needs is on PyPI.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
BUILD = DOCS / "_build"
NOTEBOOKS_ENV = "DKP_SITE_NOTEBOOKS"     # comma-separated notebook names for docs/conf.py; unset: all
VENDOR_ENV = "DKP_SITE_VENDOR"           # the folder of vendored JavaScript for docs/conf.py
QUICK_RESULTS_ENV = "DKP_QUICK_RESULTS"  # dkp's shared folder of --quick runs (see conftest.py)

# npm package -> (version, {folder or file in the site's _static/: its path in the package},
# what to leave out): MathJax's CommonHTML output with TeX input, and RequireJS and ipywidgets'
# HTML manager (embed-amd.js and its fonts), as MyST-NB loads them from a CDN by default
VENDORED = {
    "mathjax": ("3.2.2", {"mathjax": "es5"},
                ["sre", "*svg*", "*-full*", "mml-*", "tex-mml-*", "node-main.js", "latest.js"]),
    "requirejs": ("2.3.8", {"widgets/require.js": "require.js"}, []),
    "@jupyter-widgets/html-manager": ("1.0.15", {"widgets/html-manager": "dist"},
                                      ["embed.js", "libembed-amd.js", "*.LICENSE.txt"]),
}


def notebooks(root=ROOT):
    """The course's notebooks in order: notebooks/NN_*.ipynb."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def select(names, root=ROOT):
    """The notebooks whose file name starts with one of `names` ('02', '02_kronecker_products',
    '02_kronecker_products.ipynb'); an unknown name is an error that lists the notebooks."""
    every = notebooks(root)
    chosen = []
    for name in names:
        stem = Path(name).name.removesuffix(".ipynb")
        found = [path for path in every if path.stem.startswith(stem)]
        if len(found) != 1:
            raise SystemExit(f"--only {name}: {'no' if not found else 'more than one'} notebook matches; "
                             f"the notebooks are {', '.join(path.stem for path in every)}")
        if found[0] not in chosen:
            chosen.append(found[0])
    return sorted(chosen)


def vendor(folder=BUILD / "vendor"):
    """The folder of the pages' vendored JavaScript (its `static/` is copied into the site's
    _static/), fetched with `npm pack` the first time."""
    folder = Path(folder)
    static = folder / "static"
    stamp = folder / "versions.txt"
    wanted = "".join(f"{name}@{version} {files} without {leave_out}\n"
                     for name, (version, files, leave_out) in VENDORED.items())
    if stamp.is_file() and stamp.read_text() == wanted:
        return folder
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm not found: the site's JavaScript (MathJax, ipywidgets' HTML manager) comes "
                         "from the npm registry; install Node.js and npm")
    shutil.rmtree(folder, ignore_errors=True)
    static.mkdir(parents=True)
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (version, files, leave_out) in VENDORED.items():
            run = subprocess.run([npm, "pack", "--silent", "--prefer-offline", f"{name}@{version}"], cwd=tmp,
                                 capture_output=True, text=True)
            if run.returncode != 0:
                raise SystemExit(f"npm pack {name}@{version} failed:\n{run.stderr}")
            tarball = Path(tmp) / run.stdout.strip().splitlines()[-1]
            unpacked = Path(tmp) / tarball.stem
            with tarfile.open(tarball) as tar:
                if hasattr(tarfile, "data_filter"):        # Python >= 3.10.12: no links or paths out
                    tar.extractall(unpacked, filter="data")
                else:
                    tar.extractall(unpacked)
            for dest, inside in files.items():
                source = unpacked / "package" / inside
                target = static / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                if source.is_dir():
                    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.map", *leave_out))
                else:
                    shutil.copy2(source, target)
            meta = json.loads((unpacked / "package" / "package.json").read_text())
            notes.append(f"{name}@{version} ({meta.get('license', 'licence: see the package')}), "
                         f"from the npm registry: {', '.join(files)}\n")
    (static / "VENDORED.txt").write_text("".join(notes))
    stamp.write_text(wanted)
    return folder


def build(only=(), out=BUILD, allow_errors=False, root=ROOT, vendor_dir=BUILD / "vendor", quiet=False,
          timeout=None):
    """Build the site into out/html (Sphinx's doctrees and MyST-NB's executed notebooks beside it);
    returns (exit code, seconds). Past `timeout` seconds the build is stopped, kernels and all, and
    its exit code is None."""
    out = Path(out)
    chosen = select(only, root) if only else notebooks(root)
    env = dict(os.environ)
    env[NOTEBOOKS_ENV] = ",".join(path.stem for path in chosen)
    env[VENDOR_ENV] = str(vendor(vendor_dir))
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "--keep-going", "-T",   # -T: a failing
               # cell's source and traceback (MyST-NB's CellExecutionError), not only the notebook's name
               "-c", str(root / "docs"), "-d", str(out / "doctrees"), str(root), str(out / "html")]
    if allow_errors:
        command += ["-D", "nb_execution_raise_on_error=0"]
    if quiet:
        command.append("-q")
    for stale in ("html", "jupyter_execute"):          # no page or notebook left from an earlier build
        shutil.rmtree(out / stale, ignore_errors=True)
    shared = None
    if not env.get(QUICK_RESULTS_ENV):
        shared = tempfile.mkdtemp(prefix="dkp-site-quick-")
        env[QUICK_RESULTS_ENV] = shared
    print(f"building {len(chosen)} notebook page(s) into {out / 'html'}: "
          f"{', '.join(path.stem for path in chosen)}", flush=True)
    start = time.perf_counter()
    sphinx = subprocess.Popen(command, env=env, cwd=root, start_new_session=True)
    try:
        code = sphinx.wait(timeout=timeout)
    except BaseException as stop:                      # the timeout, or Ctrl-C: stop Sphinx and its kernels
        os.killpg(sphinx.pid, signal.SIGKILL)
        sphinx.wait()
        if not isinstance(stop, subprocess.TimeoutExpired):
            raise
        code = None
    finally:
        if shared:
            shutil.rmtree(shared, ignore_errors=True)
    return code, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", default=[], metavar="NOTEBOOK",
                        help="build only this notebook's page (and README's); repeatable; '02' is enough")
    parser.add_argument("--out", default=str(BUILD), help="build folder (default docs/_build; pages in OUT/html)")
    parser.add_argument("--allow-errors", action="store_true",
                        help="build pages of notebooks that raise, with the traceback in the page")
    parser.add_argument("--timeout", type=float, help="stop the build after this many seconds")
    parser.add_argument("-q", "--quiet", action="store_true", help="Sphinx prints only warnings and errors")
    parser.add_argument("--check", action="store_true",
                        help="then run docs/check_site.py on the pages built")
    args = parser.parse_args(argv)
    code, seconds = build(args.only, args.out, args.allow_errors, quiet=args.quiet, timeout=args.timeout)
    minutes, rest = divmod(seconds, 60)
    outcome = ("finished" if code == 0 else "STOPPED at the timeout" if code is None else f"FAILED (exit {code})")
    print(f"site build {outcome}: {seconds:.1f} s wall time ({int(minutes)} min {rest:.0f} s); "
          f"pages in {Path(args.out) / 'html'}", flush=True)
    if code is None:
        return 124
    if code == 0 and args.check:
        import check_site
        check = ["--site", str(Path(args.out) / "html")] + [arg for name in args.only for arg in ("--only", name)]
        code = check_site.main(check)
    return code


if __name__ == "__main__":
    sys.exit(main())
