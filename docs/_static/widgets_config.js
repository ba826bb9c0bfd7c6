// Loaded between RequireJS and ipywidgets' HTML manager on pages with widgets (conf.py: nb_ipywidgets_js).
// The HTML manager is an AMD module that loads its fonts from beside its module path
// (@jupyter-widgets/html-manager/dist/, by default relative to the page): map that path to the copy
// of the manager in this site's _static/widgets/.
(() => {
  const root = document.documentElement.dataset.content_root || "";
  const manager = new URL(root + "_static/widgets/html-manager", document.baseURI).href;
  window.__jupyter_widgets_assets_path__ = manager + "/";
  require.config({paths: {"@jupyter-widgets/html-manager/dist": manager}});
})();
