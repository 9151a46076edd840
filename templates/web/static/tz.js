// Pre-select the visitor's time zone on the subscribe form. Without JavaScript the
// select still works: it just starts at UTC.
(function () {
  "use strict";
  var select = document.getElementById("timezone");
  if (!select || select.getAttribute("data-detect") !== "1") return;
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    return;
  }
  if (!zone) return;
  var found = false;
  for (var i = 0; i < select.options.length; i++) {
    if (select.options[i].value === zone) { found = true; break; }
  }
  if (!found) {
    var option = document.createElement("option");
    option.value = zone;
    option.textContent = zone.replace(/_/g, " ");
    select.insertBefore(option, select.firstChild);
  }
  select.value = zone;
  var hint = document.getElementById("timezone-hint");
  if (hint) hint.textContent = "The hour above is in this time zone (taken from your browser).";
})();
