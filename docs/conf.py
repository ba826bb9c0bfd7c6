"""Sphinx configuration of the course website; `python docs/build_site.py` builds it.

The sources are the repository itself (`sphinx-build -c docs . docs/_build/html`), so README's
figure paths and the notebooks' working folder are the ones they have in the repository. The
pages, in the order of the site's table of contents (TOC below): README.md (the landing page,
also index.html), the notebooks notebooks/NN_*.ipynb in order, docs/background.md.
"""
import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS))
import build_site  # noqa: E402  (docs/build_site.py: the notebooks, the vendored JavaScript)

# --- the pages -------------------------------------------------------------------------------------
chosen = os.environ.get(build_site.NOTEBOOKS_ENV)          # set by build_site.py --only; unset: all
NOTEBOOKS = [f"notebooks/{path.stem}" for path in build_site.notebooks(ROOT)
             if chosen is None or path.stem in chosen.split(",")]
BACKGROUND = ["docs/background"] if (ROOT / "docs" / "background.md").is_file() else []
TOC = [("The course", NOTEBOOKS), ("Background", BACKGROUND)]

project = "dkp: doped Kronecker products"
root_doc = "README"
include_patterns = ["README.md", *(f"{doc}.md" for doc in BACKGROUND), *(f"{doc}.ipynb" for doc in NOTEBOOKS)]
exclude_patterns = ["docs/_build", "**/.ipynb_checkpoints", ".git", ".venv", "runs", "node_modules"]

extensions = ["myst_nb"]
myst_enable_extensions = ["dollarmath", "amsmath"]

# --- execution: every notebook, in a fresh kernel, in its own folder, as committed -----------------
nb_execution_mode = "force"            # always run, never reuse stored outputs
nb_execution_timeout = 600             # seconds per cell: the longest (--quick experiments) take a few minutes;
                                       # a kernel that stops answering (ipykernel 7, see below) fails the build
nb_execution_raise_on_error = True     # a cell that raises fails the build (build_site.py --allow-errors: not)
nb_execution_show_tb = True            # ... and the log shows its traceback
nb_merge_streams = True
# ipykernel 7 sometimes leaves a request unanswered: the kernel sits idle and the cell never finishes
# (seen in about 1 in 20 executions of notebook 02 here with ipykernel 7.4; ipython/ipykernel#1554).
# The per-cell timeout above turns that into a failed build instead of one that never ends.

# --- the pages' JavaScript, served from the site (build_site.VENDORED) -----------------------------
VENDOR = Path(os.environ.get(build_site.VENDOR_ENV) or build_site.vendor())
html_static_path = [str(VENDOR / "static"), "_static"]
mathjax_path = "mathjax/tex-chtml.js"       # and docs/_static/mathjax_config.js (setup, below)
# ipywidgets: RequireJS, where the HTML manager finds its fonts (docs/_static/widgets_config.js), then
# the HTML manager, which draws each widget from the state that the execution saved in the notebook's
# metadata (MyST-NB adds these only to pages with widget state)
nb_ipywidgets_js = {
    "widgets/require.js": {},
    "widgets_config.js": {},
    "widgets/html-manager/embed-amd.js": {},
}

# --- the theme --------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = project
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "use_download_button": True,
}


def add_toc(app, docname, source):
    """README.md is the landing page: the table of contents goes under it, hidden (the sidebar
    shows it), so README.md itself needs none."""
    if docname != root_doc:
        return
    for caption, docs in TOC:
        if docs:
            entries = "\n".join(f"/{doc}" for doc in docs)
            source[0] += f"\n\n```{{toctree}}\n:hidden:\n:caption: {caption}\n\n{entries}\n```\n"


def copy_index(app, exception):
    """index.html: the landing page under the name a web server serves first."""
    if exception is None and app.builder.format == "html":
        outdir = Path(app.outdir)
        shutil.copyfile(outdir / f"{root_doc}.html", outdir / "index.html")


def setup(app):
    # MathJax on every page, not only on those with equations in their text: the sidebar shows
    # notebook titles that hold equations (04's) on every page
    app.set_html_assets_policy("always")
    # MathJax 2's typesetting call, which ipywidgets makes, for MathJax 3: right after MathJax's
    # <script> (priority 500) and before MathJax runs
    app.add_js_file("mathjax_config.js", priority=501)
    app.connect("source-read", add_toc)
    app.connect("build-finished", copy_index)
