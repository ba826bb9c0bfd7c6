// ipywidgets' HTML manager typesets a widget's text with MathJax 2's call, MathJax.Hub.Queue(["Typeset",
// MathJax.Hub, element]); MathJax 3, which these pages load, has no Hub. This one typesets the element with
// MathJax 3: at once if MathJax is ready, else when it is. conf.py loads this file right after MathJax's
// <script defer> tag, so it runs before MathJax does and adds to the configuration that MyST wrote
// (window.MathJax = {options: ...}).
(() => {
  const waiting = [];
  const typeset = (elements) => window.MathJax.startup.promise.then(() => window.MathJax.typesetPromise(elements));
  const hub = {
    Queue(...jobs) {
      for (const job of jobs) {
        if (!Array.isArray(job) || job[0] !== "Typeset" || !job[2]) continue;
        if (window.MathJax.typesetPromise) typeset([job[2]]);
        else waiting.push(job[2]);
      }
    },
  };
  const config = (window.MathJax = window.MathJax || {});
  config.Hub = hub;
  config.startup = Object.assign(config.startup || {}, {
    ready() {
      window.MathJax.startup.defaultReady();
      window.MathJax.Hub = hub;
      if (waiting.length) typeset(waiting.splice(0));
    },
  });
})();
