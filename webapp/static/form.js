// Task forms rendered by templates/_form.html: add and remove list rows, and stop double submits.
// The server renders every row and validates everything; this only saves a round trip.
(function () {
  "use strict";

  function nextIndex(tbody) {
    var next = 0;
    tbody.querySelectorAll("tr[data-row]").forEach(function (row) {
      var index = parseInt(row.getAttribute("data-index"), 10);
      if (!isNaN(index) && index >= next) { next = index + 1; }
    });
    return next;
  }

  function addRow(button) {
    var array = button.closest("[data-array]");
    var tbody = array && array.querySelector("tbody[data-rows]");
    var template = array && array.querySelector("template[data-row-template]");
    if (!tbody || !template) { return; }
    var max = parseInt(array.getAttribute("data-max-items"), 10);
    if (!isNaN(max) && tbody.querySelectorAll("tr[data-row]").length >= max) { return; }
    var html = template.innerHTML.split("__INDEX__").join(String(nextIndex(tbody)));
    tbody.insertAdjacentHTML("beforeend", html);
    var rows = tbody.querySelectorAll("tr[data-row]");
    var first = rows[rows.length - 1].querySelector("input, select, textarea");
    if (first) { first.focus(); }
  }

  function removeRow(button) {
    var row = button.closest("tr[data-row]");
    var array = button.closest("[data-array]");
    if (!row) { return; }
    row.parentNode.removeChild(row);
    var add = array && array.querySelector("[data-add-row]");
    if (add) { add.focus(); }
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest && event.target.closest("[data-add-row], [data-remove-row]");
    if (!target) { return; }
    event.preventDefault();
    if (target.hasAttribute("data-add-row")) { addRow(target); } else { removeRow(target); }
  });

  // Disable the submit buttons of a form with data-once (or a rendered task form) once it is on its way.
  // Deferred, so the clicked button's name/value is still sent (disabled controls are left out of a submission).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (event.defaultPrevented || !(form.hasAttribute("data-once") || form.querySelector(".form-fields"))) { return; }
    window.setTimeout(function () {
      form.querySelectorAll("button[type=submit], input[type=submit], button:not([type])").forEach(function (b) {
        b.disabled = true;
        b.setAttribute("aria-disabled", "true");
      });
      form.setAttribute("aria-busy", "true");
    }, 0);
  });

  // Coming back with the browser's Back button shows the page from cache: make it usable again.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }
    document.querySelectorAll("form[aria-busy]").forEach(function (form) {
      form.removeAttribute("aria-busy");
      form.querySelectorAll("[aria-disabled=true]").forEach(function (b) {
        b.disabled = false;
        b.removeAttribute("aria-disabled");
      });
    });
  });
})();
