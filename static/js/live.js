/* Keeps a region of the page current without reloading it.
 *
 * Every element with data-live-url is refreshed from that same-origin URL (an HTML fragment the
 * server renders with the same template as the page) every data-live-ms milliseconds while the
 * tab is visible. The region is only replaced when its text changed, so focus and scroll stay put
 * between changes. Polling stops when the session ends (redirect to the login page) or the object
 * is gone (404).
 */
(function () {
  "use strict";

  function normalise(text) {
    return text.replace(/\s+/g, " ").trim();
  }

  function watch(region) {
    var url = region.getAttribute("data-live-url");
    var every = parseInt(region.getAttribute("data-live-ms"), 10) || 2000;
    var stopped = false;

    function stop(reason) {
      stopped = true;
      region.setAttribute("data-live-state", reason);
    }

    function later() {
      if (!stopped) {
        window.setTimeout(refresh, every);
      }
    }

    function refresh() {
      if (document.hidden) {
        later();
        return;
      }
      window
        .fetch(url, {
          credentials: "same-origin",
          cache: "no-store",
          headers: { "X-Requested-With": "fetch" },
        })
        .then(function (response) {
          if (response.redirected || response.status === 401 || response.status === 403) {
            stop("signed-out");
            return null;
          }
          if (response.status === 404) {
            stop("gone");
            return null;
          }
          if (!response.ok) {
            region.setAttribute("data-live-state", "error");
            return null;
          }
          return response.text();
        })
        .then(function (html) {
          if (html === null) {
            return;
          }
          var fresh = document.createElement("template");
          fresh.innerHTML = html;
          if (normalise(fresh.content.textContent) !== normalise(region.textContent)) {
            region.replaceChildren(fresh.content);
          }
          region.setAttribute("data-live-state", "ok");
        })
        .catch(function () {
          // The server may be restarting: keep trying at the same pace.
          region.setAttribute("data-live-state", "error");
        })
        .finally(later);
    }

    later();
  }

  document.querySelectorAll("[data-live-url]").forEach(watch);
})();
