// Shows when this page's file was last changed, as the browser saw it through the CDN.
// No network requests: everything here comes from the page itself.
(function () {
  "use strict";
  var slot = document.getElementById("last-modified");
  if (slot) {
    slot.textContent = document.lastModified;
  }
})();
