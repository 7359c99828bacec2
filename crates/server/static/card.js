// The live call card page (/card/<link>): asks the page's link for a card-stream token, opens
// the stream with it, shows a card while a call rings or talks on this user's phone and hides
// it when the leg ends. The token is asked again before it expires and after any stream error;
// a 404 then means the link was revoked.
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main || !main.getAttribute("data-token-url")) return;
  var tokenUrl = main.getAttribute("data-token-url");
  var status = document.getElementById("card-status");
  var waiting = document.getElementById("card-waiting");
  var list = document.getElementById("card-list");
  var revoked = document.getElementById("card-revoked");
  var template = document.getElementById("card-template");
  var words = function (name) { return main.getAttribute("data-" + name) || ""; };
  var source = null;
  var refreshTimer = null;
  var retryDelay = 1000;
  // Cards showing, by entry and leg; contacts found, by phone.
  var cards = {};
  var contacts = {};

  // +7 916 123-45-67 for a Russian number, +<digits> for others.
  function formatPhone(digits) {
    if (!digits) return "";
    if (/^7\d{10}$/.test(digits)) {
      return "+7 " + digits.slice(1, 4) + " " + digits.slice(4, 7) + "-" + digits.slice(7, 9) + "-" + digits.slice(9);
    }
    return "+" + digits;
  }

  function sync() {
    waiting.hidden = Object.keys(cards).length > 0 || !revoked.hidden;
  }

  function link(text, href) {
    var a = document.createElement("a");
    a.textContent = text;
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }

  function fillContact(article, phone) {
    var contactCell = article.querySelector("[data-field=contact]");
    var leadsCell = article.querySelector("[data-field=leads]");
    var found = contacts[phone];
    contactCell.textContent = "";
    leadsCell.textContent = "";
    if (!found) {
      contactCell.textContent = words("crm-asking");
      leadsCell.textContent = "—";
      return;
    }
    if (found.crm !== "found") {
      contactCell.textContent = words("crm-" + found.crm.replace(/_/g, "-"));
      leadsCell.textContent = "—";
      return;
    }
    var leads = [];
    found.contacts.forEach(function (contact, i) {
      if (i > 0) contactCell.appendChild(document.createTextNode(", "));
      contactCell.appendChild(link(contact.name, contact.url));
      leads = leads.concat(contact.leads);
    });
    if (leads.length === 0) {
      leadsCell.textContent = words("no-open-leads");
    }
    leads.forEach(function (lead, i) {
      if (i > 0) leadsCell.appendChild(document.createTextNode(", "));
      leadsCell.appendChild(link(lead.name, lead.url));
    });
  }

  function show(card) {
    var key = card.entry_id + "/" + card.call_id;
    var article = cards[key];
    if (!article) {
      article = template.content.firstElementChild.cloneNode(true);
      cards[key] = article;
      list.appendChild(article);
    }
    article.setAttribute("data-phone", card.client_phone || "");
    article.querySelector("[data-field=phone]").textContent = formatPhone(card.client_phone);
    article.querySelector("[data-field=extension]").textContent = card.employee_extension || "—";
    fillContact(article, card.client_phone || "");
    sync();
  }

  function hide(card) {
    var key = card.entry_id + "/" + card.call_id;
    if (cards[key]) {
      cards[key].remove();
      delete cards[key];
    }
    sync();
  }

  function onContact(found) {
    contacts[found.client_phone] = found;
    Object.keys(cards).forEach(function (key) {
      if (cards[key].getAttribute("data-phone") === found.client_phone) {
        fillContact(cards[key], found.client_phone);
      }
    });
  }

  function linkRevoked() {
    if (source) source.close();
    source = null;
    clearTimeout(refreshTimer);
    Object.keys(cards).forEach(function (key) { cards[key].remove(); });
    cards = {};
    revoked.hidden = false;
    status.hidden = true;
    sync();
  }

  function retryLater() {
    clearTimeout(refreshTimer);
    status.textContent = words("reconnecting");
    refreshTimer = setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 30000);
  }

  // Asks for a fresh stream token and (re)opens the stream with it.
  function connect() {
    clearTimeout(refreshTimer);
    fetch(tokenUrl, { cache: "no-store", credentials: "omit" }).then(function (response) {
      if (response.status === 404) {
        linkRevoked();
        return null;
      }
      if (!response.ok) throw new Error("stream token: " + response.status);
      return response.json();
    }).then(function (answer) {
      if (!answer) return;
      if (source) source.close();
      source = new EventSource(answer.stream_url);
      source.addEventListener("open", function () {
        retryDelay = 1000;
        status.textContent = words("live");
      });
      source.addEventListener("card", function (e) {
        var card = JSON.parse(e.data);
        if (card.action === "show") show(card); else hide(card);
      });
      source.addEventListener("contact", function (e) { onContact(JSON.parse(e.data)); });
      // The browser would retry with the same token: ask for a new one instead, which also
      // tells a revoked link apart from a lost connection.
      source.addEventListener("error", function () {
        source.close();
        source = null;
        retryLater();
      });
      // A new token ten minutes before this one expires.
      var ms = answer.expires_at * 1000 - Date.now() - 10 * 60 * 1000;
      refreshTimer = setTimeout(connect, Math.max(ms, 60 * 1000));
    }).catch(retryLater);
  }

  connect();
})();
