// Print buttons ([data-action="print"]): the Content-Security-Policy allows no inline handlers, so they are bound here.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest('[data-action="print"]') : null;
    if (button) {
      event.preventDefault();
      window.print();
    }
  });
})();
