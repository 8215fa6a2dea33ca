// Cairn UI: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";
  // "/" focuses the search box, as on most search sites.
  document.addEventListener("keydown", function (e) {
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    // The page's own search box (after the header's one) wins.
    var boxes = document.querySelectorAll("input[data-slash]"), box = boxes[boxes.length - 1];
    if (box) { e.preventDefault(); box.focus(); box.select(); }
  });
  // Facets fold away on narrow screens; they stay open without JavaScript.
  if (window.matchMedia("(max-width: 760px)").matches) {
    document.querySelectorAll("details[data-collapse-narrow]").forEach(function (d) { d.open = false; });
  }
  // Forms marked data-autosubmit go as soon as a choice changes. A keyboard user steps through
  // a list's options with the arrow keys, each step a change: those wait for Enter (or the
  // form's button), where a pointer's choice goes at once.
  document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
    var keyed = false;
    function go() { form.requestSubmit ? form.requestSubmit() : form.submit(); }
    form.addEventListener("keydown", function (e) {
      keyed = true;
      if (e.key === "Enter" && e.target.tagName === "SELECT") { e.preventDefault(); go(); }
    });
    form.addEventListener("pointerdown", function () { keyed = false; });
    form.addEventListener("change", function () { if (!keyed) go(); });
  });
  // The lineage picture opens scrolled to the asset itself.
  document.querySelectorAll("svg[data-lineage]").forEach(function (svg) {
    var root = svg.querySelector(".k-root rect"), box = svg.parentElement;
    if (!root || !box || box.scrollWidth <= box.clientWidth) return;
    var x = parseFloat(root.getAttribute("x")) + parseFloat(root.getAttribute("width")) / 2;
    var y = parseFloat(root.getAttribute("y")) + parseFloat(root.getAttribute("height")) / 2;
    box.scrollLeft = Math.max(0, x - box.clientWidth / 2);
    box.scrollTop = Math.max(0, y - box.clientHeight / 2);
  });
  // Copy buttons on code blocks.
  if (navigator.clipboard) {
    document.querySelectorAll("pre[data-copy]").forEach(function (pre) {
      var b = document.createElement("button");
      b.type = "button"; b.className = "copy"; b.textContent = "Copy";
      b.setAttribute("aria-label", "Copy to the clipboard");
      b.addEventListener("click", function () {
        var code = pre.querySelector("code") || pre;
        navigator.clipboard.writeText(code.innerText).then(function () {
          b.textContent = "Copied"; setTimeout(function () { b.textContent = "Copy"; }, 1500);
        }, function () { b.textContent = "Select and copy"; });
      });
      pre.appendChild(b);
    });
  }
})();
