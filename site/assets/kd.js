// Typeset the math of every page with the local KaTeX. pymdownx.arithmatex (generic mode)
// leaves \( … \) in <span class="arithmatex"> and \[ … \] in <div class="arithmatex">.
// `document$` is mkdocs-material's page observable.
(function () {
  function typeset(root) {
    if (typeof katex === "undefined") return;
    root.querySelectorAll(".arithmatex").forEach(function (el) {
      if (el.dataset.kdTypeset) return;
      var tex = el.textContent.trim();
      var display = el.tagName === "DIV";
      if (tex.startsWith("\\(") && tex.endsWith("\\)")) tex = tex.slice(2, -2);
      else if (tex.startsWith("\\[") && tex.endsWith("\\]")) { tex = tex.slice(2, -2); display = true; }
      katex.render(tex, el, { displayMode: display, throwOnError: false });
      el.dataset.kdTypeset = "1";
    });
  }
  if (typeof document$ !== "undefined") document$.subscribe(function () { typeset(document.body); });
  else document.addEventListener("DOMContentLoaded", function () { typeset(document.body); });
})();
