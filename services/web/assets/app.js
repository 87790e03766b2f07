// Flotilla web UI: progressive enhancement. Every page works without this script (plain forms,
// post/redirect/get). With it, forms are sent in the background and the page is updated in place
// from the server's answer (the same HTML), keeping focus and scroll position.
(function () {
  "use strict";

  // The server shows and reads times in the browser's offset once it knows it (not a secret).
  var tz = -new Date().getTimezoneOffset();
  document.cookie = "flotilla_tz=" + tz + "; path=/; SameSite=Lax" + (location.protocol === "https:" ? "; Secure" : "");

  function ready() {
    var t = document.getElementById("transcript");
    if (t) t.scrollTop = t.scrollHeight;
    var focus = document.querySelector("[data-focus]");
    if (focus) {
      if (!focus.hasAttribute("tabindex")) focus.setAttribute("tabindex", "-1");
    }
    return focus;
  }

  function swap(html, url, push) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    if (!doc.body) return false;
    var active = document.activeElement;
    var activeId = active && active.id ? active.id : null;
    var scroll = window.scrollY;
    document.title = doc.title;
    document.body.replaceWith(document.adoptNode(doc.body));
    if (push && url && url !== location.href.split("#")[0]) history.pushState({ flotilla: true }, "", url);
    var focus = ready();
    var again = activeId && document.getElementById(activeId);
    if (focus) {
      focus.focus({ preventScroll: true });
    } else if (again) {
      again.focus({ preventScroll: true });
    } else {
      var main = document.getElementById("main");
      if (main) main.focus({ preventScroll: true });
    }
    window.scrollTo(0, scroll);
    return true;
  }

  function say(text) {
    var flash = document.getElementById("flash");
    if (!flash) return;
    var p = document.createElement("div");
    p.className = "alert";
    p.setAttribute("role", "alert");
    p.textContent = text;
    flash.replaceChildren(p);
  }

  function pending(form, message) {
    var t = document.getElementById("transcript");
    if (!t || !message) return;
    var mine = document.createElement("li");
    mine.className = "msg user";
    var p1 = document.createElement("p");
    p1.textContent = message;
    mine.appendChild(p1);
    var wait = document.createElement("li");
    wait.className = "msg bot pending";
    var p2 = document.createElement("p");
    p2.textContent = "Thinking…";
    wait.appendChild(p2);
    t.appendChild(mine);
    t.appendChild(wait);
    t.scrollTop = t.scrollHeight;
    var input = form.querySelector("input[name=message]");
    if (input) input.value = "";
  }

  function send(form, submitter) {
    var method = (form.getAttribute("method") || "get").toUpperCase();
    var data = new FormData(form);
    if (submitter && submitter.name) data.append(submitter.name, submitter.value);
    var url = new URL(form.getAttribute("action") || location.href, location.href);
    var init = { method: method, credentials: "same-origin", headers: { "X-Requested-With": "fetch" } };
    if (method === "GET") {
      var q = new URLSearchParams();
      data.forEach(function (v, k) {
        if (typeof v === "string" && v !== "") q.append(k, v);
      });
      url.search = q.toString();
    } else {
      init.body = new URLSearchParams(data);
    }
    var buttons = Array.prototype.slice.call(form.querySelectorAll("button"));
    buttons.forEach(function (b) { b.disabled = true; });
    if (form.hasAttribute("data-chat")) pending(form, data.get("message"));
    fetch(url.toString(), init)
      .then(function (res) {
        return res.text().then(function (html) {
          if (!swap(html, res.url, method === "GET" || res.redirected)) throw new Error("not a page");
        });
      })
      .catch(function () {
        buttons.forEach(function (b) { b.disabled = false; });
        say("The server could not be reached. Check your connection and try again.");
      });
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!(form instanceof HTMLFormElement) || form.hasAttribute("data-native")) return;
    if (!window.fetch || !window.DOMParser) return;
    ev.preventDefault();
    send(form, ev.submitter);
  });

  // Filters apply as soon as a choice changes.
  document.addEventListener("change", function (ev) {
    var el = ev.target;
    if (el instanceof HTMLSelectElement && el.hasAttribute("data-autosubmit") && el.form) {
      if (el.form.requestSubmit) el.form.requestSubmit();
    }
  });

  // Back and forward show the page of that address again.
  window.addEventListener("popstate", function () {
    fetch(location.href, { credentials: "same-origin" })
      .then(function (res) { return res.text(); })
      .then(function (html) { swap(html, null, false); })
      .catch(function () { location.reload(); });
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
