// Keyboard shortcuts of datagen view; the pages work without them (plain links and forms).
(function () {
  "use strict";
  function typing(event) {
    var tag = event.target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || event.target.isContentEditable;
  }
  function go(id) {
    var link = document.getElementById(id);
    if (link) { window.location = link.href; }
  }

  // The sample list: j/k select a row, Enter opens it, / searches; a click on a row opens it.
  var table = document.getElementById("samples");
  var rows = table ? Array.prototype.slice.call(table.querySelectorAll("tr[data-href]")) : [];
  var selected = -1;
  function select(index) {
    if (!rows.length) { return; }
    if (selected >= 0) { rows[selected].classList.remove("selected"); }
    selected = Math.max(0, Math.min(rows.length - 1, index));
    rows[selected].classList.add("selected");
    rows[selected].scrollIntoView({block: "nearest"});
  }
  rows.forEach(function (row) {
    row.addEventListener("click", function (event) {
      if (event.target.tagName !== "A") { window.location = row.dataset.href; }
    });
  });

  // The sample page: g and b rate and move to the next sample, j/k move, c comments, e corrects, Ctrl+Enter saves.
  var review = document.getElementById("review");
  function rate(verdict) {
    document.getElementById("next-after-save").value = "1";
    var button = document.getElementById(verdict);
    review.requestSubmit(button);
  }

  document.addEventListener("keydown", function (event) {
    if (review && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      review.requestSubmit(document.getElementById("save"));
      return;
    }
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (rows.length) {
      if (event.key === "j") { select(selected + 1); }
      else if (event.key === "k") { select(selected - 1); }
      else if (event.key === "Enter" && selected >= 0) { window.location = rows[selected].dataset.href; }
      else if (event.key === "/") { event.preventDefault(); document.getElementById("search").focus(); }
      return;
    }
    if (event.key === "j") { go("next"); }
    else if (event.key === "k") { go("previous"); }
    else if (event.key === "u") { go("back"); }
    else if (review && event.key === "g") { rate("good"); }
    else if (review && event.key === "b") { rate("bad"); }
    else if (review && event.key === "c") { event.preventDefault(); document.getElementById("comment").focus(); }
    else if (review && event.key === "e") {
      event.preventDefault();
      document.getElementById("correction").open = true;
      document.getElementById("correct-output").focus();
    }
  });
})();
