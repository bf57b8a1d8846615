/* The time-zone picker: a search box that narrows the grouped list, and a button that selects the
 * browser's own zone. On the sign-up form the browser's zone is selected from the start.
 * Without script the plain grouped <select> still works. */
(function () {
  "use strict";

  var aliases = {};
  var aliasData = document.getElementById("tz-aliases");
  if (aliasData) {
    try {
      aliases = JSON.parse(aliasData.textContent) || {};
    } catch (error) {
      aliases = {};
    }
  }

  function browserZone(select) {
    var name = "";
    try {
      name = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch (error) {
      return "";
    }
    // Some browsers report an old alias (Asia/Calcutta); the list has the zone it stands for.
    var wanted = aliases[name] || name;
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === wanted) {
        return wanted;
      }
    }
    return "";
  }

  function choose(select, name) {
    if (name && select.value !== name) {
      select.value = name;
      select.dispatchEvent(new Event("change", { bubbles: true }));
    }
  }

  function normalise(text) {
    return text.toLowerCase().replace(/[_/]+/g, " ").replace(/\s+/g, " ").trim();
  }

  function narrow(select, query) {
    var words = normalise(query);
    var firstShown = null;
    var selectedShown = false;
    Array.prototype.forEach.call(select.querySelectorAll("optgroup"), function (group) {
      var any = false;
      Array.prototype.forEach.call(group.querySelectorAll("option"), function (option) {
        var shown = !words || normalise(option.value).indexOf(words) !== -1;
        option.hidden = !shown;
        if (shown) {
          any = true;
          firstShown = firstShown || option;
          selectedShown = selectedShown || option.selected;
        }
      });
      group.hidden = !any;
    });
    if (words && firstShown && !selectedShown) {
      choose(select, firstShown.value);
    }
  }

  Array.prototype.forEach.call(document.querySelectorAll("select[data-time-zone]"), function (select) {
    var tools = document.querySelector('[data-tz-tools-for="' + select.id + '"]');
    var zone = browserZone(select);
    if (tools) {
      tools.hidden = false;
      var search = tools.querySelector(".tz-search");
      var button = tools.querySelector(".tz-browser");
      search.addEventListener("input", function () {
        narrow(select, search.value);
      });
      if (zone) {
        button.textContent = "Use my browser\u2019s zone (" + zone + ")";
        button.addEventListener("click", function () {
          search.value = "";
          narrow(select, "");
          choose(select, zone);
        });
      } else {
        button.hidden = true;
      }
    }
    // A form sent back with errors keeps what the person chose.
    if (zone && select.hasAttribute("data-prefer-browser") && !select.form.hasAttribute("data-submitted")) {
      choose(select, zone);
    }
  });
})();
