"""Check the built course website in a real browser: each page renders, shows its figures, widgets
and equations, and holds no error output.

    python docs/check_site.py                        # every page of docs/_build/html
    python docs/check_site.py --only 02 --only 05    # the landing page and those notebooks' pages
    python docs/check_site.py --site DIR             # another build

The site is served on 127.0.0.1 (a loopback-only http.server in a thread) and each page is opened
in headless Chromium (Debian's `chromium`, driven by Playwright; Playwright's own browser download
is not needed). Requests that leave the site are refused and count as failures: the pages must work
without a network. For each page it checks:

- the page: HTTP 200, a <title> and an <h1>;
- no error output: no cell output that is a traceback or an error (MyST-NB's `output traceback` and
  `output error` elements, the text "Traceback (most recent call last)" or a raw `ename`), and no
  JavaScript error while the page runs;
- figures: every <img> on the page is loaded (complete, naturalWidth > 0), and a notebook page shows
  at least as many loaded images in its cell outputs as its executed notebook has image outputs
  (the executed notebooks are read from DIR/../jupyter_execute, where MyST-NB writes them);
- widgets: every ipywidgets view in the page is drawn (a non-empty widget element beside its view
  script), and a notebook page has as many views as its executed notebook has widget outputs;
- equations: every MathJax element is typeset (holds an mjx-container) and none is a MathJax error;
- files: every file the page asks the server for exists;
- for the whole site: the landing page links to every notebook page checked, and every notebook of
  notebooks/ (or --notebooks DIR) chosen by --only has a page.

It prints a table of pages and results, then each failure with its page, and exits 1 if any.
"""
import argparse
import functools
import http.server
import json
import sys
import threading
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
SITE = DOCS / "_build" / "html"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SKIP = {"genindex.html", "search.html", "py-modindex.html", "README.html"}   # README.html is index.html
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
SETTLE_MS = 30_000          # how long a page may take to draw its widgets and typeset its equations

# What the page shows, read in the browser once it has settled (see SETTLED)
INSPECT = """() => {
  const text = el => (el.innerText || el.textContent || "").trim();
  const outputs = [...document.querySelectorAll(".cell_output")];
  const imgs = [...document.querySelectorAll("img")];
  const loaded = img => img.complete && img.naturalWidth > 0;
  const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  const drawn = views.filter(v => {
    const area = v.previousElementSibling;
    return area && area.classList.contains("widget-subarea") && area.children.length > 0
           && area.getBoundingClientRect().height > 0;
  });
  const maths = [...document.querySelectorAll(".math")];
  const errorOutputs = outputs.filter(o =>
      o.querySelector(".output.traceback, .output.error, .traceback")
      || /Traceback \\(most recent call last\\)/.test(text(o)) || /"ename"\\s*:/.test(text(o)));
  return {
    title: document.title.trim(),
    h1: [...document.querySelectorAll("h1")].map(text).filter(Boolean)[0] || "",
    outputs: outputs.length,
    errorOutputs: errorOutputs.map(o => text(o).split("\\n").filter(Boolean).slice(-1)[0] || "(empty)"),
    imgs: imgs.length,
    broken: imgs.filter(img => !loaded(img)).map(img => img.getAttribute("src")),
    outputImgs: outputs.flatMap(o => [...o.querySelectorAll("img")]).filter(loaded).length,
    views: views.length,
    drawn: drawn.length,
    maths: maths.length,
    typeset: maths.filter(m => m.querySelector("mjx-container")).length,
    mathErrors: document.querySelectorAll("mjx-merror").length,
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
  };
}"""

# The page has settled: images loaded or failed, widgets drawn, equations typeset (or time is up)
SETTLED = """() => {
  const imgs = [...document.querySelectorAll("img")];
  const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  const maths = [...document.querySelectorAll(".math")];
  return imgs.every(img => img.complete)
    && views.every(v => v.previousElementSibling && v.previousElementSibling.classList.contains("widget-subarea")
                        && v.previousElementSibling.children.length > 0)
    && maths.every(m => m.querySelector("mjx-container"));
}"""


def serve(site):
    """A loopback-only HTTP server of `site` in a daemon thread: (server, base URL)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def pages(site, only=()):
    """The pages to check, as paths relative to `site`: index.html first, then every other page
    (notebook pages chosen by `only`, prefixes of their names)."""
    found = []
    for path in sorted(site.rglob("*.html")):
        rel = path.relative_to(site)
        if rel.parts[0].startswith("_") or rel.name in SKIP or rel.name == "index.html":
            continue
        if only and not any(rel.stem.startswith(name) for name in only):
            continue
        found.append(rel.as_posix())
    return ["index.html", *found]


def is_notebook_page(site, page):
    """A notebook's page: Sphinx copied its .ipynb source beside the pages (_sources/)."""
    return (site / "_sources" / Path(page).with_suffix(".ipynb")).is_file()


def expected(executed, page):
    """(image outputs, widget views) of the executed notebook behind `page`, or None if it is not there."""
    path = executed / Path(page).with_suffix(".ipynb")
    if not path.is_file():
        return None
    nb = json.loads(path.read_text())
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    images = views = 0
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            images += any(kind in data for kind in IMAGE_TYPES)
            views += WIDGET_VIEW in data and data[WIDGET_VIEW].get("model_id") in state
    return images, views


def check_page(browser, base, site, executed, page, settle_ms=SETTLE_MS):
    """(row for the table, [failures]) of one page."""
    failures, js_errors, missing, outside = [], [], [], []
    context = browser.new_context()
    page_ = context.new_page()
    page_.on("pageerror", lambda error: js_errors.append(str(error).splitlines()[0]))
    page_.on("response", lambda r: missing.append(f"{r.url[len(base):]} ({r.status})")
             if r.url.startswith(base) and r.status >= 400 else None)
    page_.on("requestfailed", lambda r: missing.append(f"{r.url[len(base):]} ({r.failure})")
             if r.url.startswith(base) else None)

    def route(request_route):
        url = request_route.request.url
        if url.startswith(base) or url.startswith("data:") or url.startswith("blob:"):
            request_route.continue_()
        else:
            outside.append(url)
            request_route.abort()

    context.route("**/*", route)
    try:
        response = page_.goto(base + page, wait_until="load")
        if response is None or response.status != 200:
            failures.append(f"HTTP {response.status if response else 'no response'}")
        try:
            page_.wait_for_function(SETTLED, timeout=settle_ms)
        except Exception:                      # reported below, by what is still missing
            pass
        seen = page_.evaluate(INSPECT)
    finally:
        context.close()

    if not seen["title"]:
        failures.append("no <title>")
    if not seen["h1"]:
        failures.append("no heading (<h1>)")
    for line in seen["errorOutputs"]:
        failures.append(f"error output: {line[:120]}")
    for error in js_errors:
        failures.append(f"JavaScript error: {error[:120]}")
    for src in seen["broken"]:
        failures.append(f"image not loaded: {src}")
    for url in missing:
        failures.append(f"missing file: {url}")
    for url in sorted(set(outside)):
        failures.append(f"asks for a file outside the site: {url}")
    notebook = is_notebook_page(site, page)
    want = expected(executed, page) if notebook else None
    if notebook and want is None:
        failures.append(f"no executed notebook for this page in {executed}")
    want_images, want_views = want or (0, 0)
    if seen["outputImgs"] < want_images:
        failures.append(f"figures: {seen['outputImgs']} loaded in the cell outputs, the executed notebook has "
                        f"{want_images}")
    if seen["drawn"] < seen["views"]:
        failures.append(f"widgets: {seen['drawn']} of {seen['views']} drawn")
    if seen["views"] < want_views:
        failures.append(f"widgets: {seen['views']} in the page, the executed notebook has {want_views}")
    if seen["typeset"] < seen["maths"]:
        failures.append(f"equations: {seen['typeset']} of {seen['maths']} typeset")
    if seen["mathErrors"]:
        failures.append(f"equations: {seen['mathErrors']} MathJax errors")
    row = {
        "page": page,
        "title": seen["h1"] or seen["title"],
        "figures": (f"{seen['outputImgs']}/{want_images}" if notebook      # loaded in outputs / executed
                    else f"{seen['imgs'] - len(seen['broken'])}/{seen['imgs']}"),  # loaded / on the page
        "widgets": f"{seen['drawn']}/{max(seen['views'], want_views)}" if notebook or seen["views"] else "-",
        "equations": f"{seen['typeset']}/{seen['maths']}" if seen["maths"] else "-",
        "errors": str(len(seen["errorOutputs"]) + len(js_errors)),
        "result": "ok" if not failures else "FAIL",
        "links": seen["links"],
    }
    return row, failures


def table(rows):
    columns = ["page", "title", "figures", "widgets", "equations", "errors", "result"]
    rows = [dict(row, title=row["title"].replace("\n", " ").strip().rstrip("#¶").strip()) for row in rows]
    for row in rows:
        row["title"] = row["title"] if len(row["title"]) <= 48 else row["title"][:47] + "…"
    widths = {c: max(len(c), *(len(row[c]) for row in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(row[c].ljust(widths[c]) for c in columns) for row in rows]
    return "\n".join(lines)


def check(site=SITE, only=(), executed=None, notebooks_dir=ROOT / "notebooks", chromium=CHROMIUM,
          settle_ms=SETTLE_MS):
    """Check the pages of `site`; returns (rows, {page: [failures]}). A page has `settle_ms` to load
    its images, draw its widgets and typeset its equations."""
    from playwright.sync_api import sync_playwright

    site = Path(site).resolve()
    executed = Path(executed) if executed else site.parent / "jupyter_execute"
    if not (site / "index.html").is_file():
        return [], {str(site): ["no index.html: build the site first (python docs/build_site.py)"]}
    chosen = pages(site, only)
    rows, failures = [], {}
    server, base = serve(site)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                for page in chosen:
                    row, failed = check_page(browser, base, site, executed, page, settle_ms)
                    rows.append(row)
                    if failed:
                        failures[page] = failed
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()

    # the whole site: a page for every chosen notebook, each linked from the landing page
    site_failures = []
    wanted = sorted(path.stem for path in Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb")
                    if not only or any(path.stem.startswith(name) for name in only))
    have = {Path(page).stem for page in chosen if is_notebook_page(site, page)}
    for stem in wanted:
        if stem not in have:
            site_failures.append(f"no page for notebooks/{stem}.ipynb")
    linked = {link[len(base):].split("#")[0] for link in rows[0]["links"]} if rows else set()
    for page in chosen[1:]:
        if page not in linked:
            site_failures.append(f"the landing page does not link to {page}")
    if site_failures:
        failures["(site)"] = site_failures
    return rows, failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", default=str(SITE), help="the built pages (default docs/_build/html)")
    parser.add_argument("--only", action="append", default=[], metavar="PAGE",
                        help="check only the landing page and the pages whose name starts with PAGE; repeatable")
    parser.add_argument("--executed", help="MyST-NB's executed notebooks (default SITE/../jupyter_execute)")
    parser.add_argument("--notebooks", default=str(ROOT / "notebooks"),
                        help="the notebooks that must each have a page (default the repository's notebooks/)")
    parser.add_argument("--chromium", default=CHROMIUM, help=f"the browser (default {CHROMIUM})")
    args = parser.parse_args(argv)
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("check_site needs Playwright: pip install -e \".[site]\" (or pip install playwright)", file=sys.stderr)
        return 2
    if not Path(args.chromium).is_file():
        print(f"no browser at {args.chromium}: apt-get install chromium (Debian's), or give --chromium PATH",
              file=sys.stderr)
        return 2
    rows, failures = check(args.site, args.only, args.executed, args.notebooks, args.chromium)
    if rows:
        print(table(rows))
    for page, failed in failures.items():
        for failure in failed:
            print(f"FAIL {page}: {failure}")
    bad = len(failures)
    print(f"{len(rows)} pages checked, {len(rows) - len(set(failures) - {'(site)'})} ok"
          + (f"; {bad} with failures" if bad else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
