// The transactions page: GET /v1/transactions with its filters (portfolio, account, symbol, time
// range, origin) and its paging (next_cursor), as a table. The filters are kept in the address
// (ids and dates only), so a filtered list can be linked to.

import { allPages, api } from "./api.js";
import { byId, fill, h, money, quantity, sayError, sortableTable, when } from "./dom.js";
import { signedIn, start } from "./layout.js";

const FIELDS = ["portfolio_id", "account_id", "symbol", "from", "to", "origin", "limit"];
const DEFAULT_LIMIT = "50"; // the page's choice (transactions.html), not the API's
let accounts = {};
let cursors = [null]; // cursors[i]: the cursor that opens page i (null: the first)
let page = 0;

function field(name) {
  return byId("filters").elements.namedItem(name);
}

// A datetime-local value (the browser's time zone) as ISO 8601 with a zone, as the API wants it.
function instant(value) {
  if (!value) return "";
  const moment = new Date(value);
  return Number.isNaN(moment.getTime()) ? value : moment.toISOString();
}

function query(cursor) {
  const params = new URLSearchParams();
  for (const name of FIELDS) {
    const value = field(name).value.trim();
    if (!value) continue;
    params.set(name, name === "from" || name === "to" ? instant(value) : value);
  }
  if (cursor) params.set("cursor", cursor);
  return params;
}

function table(items) {
  return sortableTable({
    caption: `Transactions, newest first (page ${page + 1})`,
    columns: [
      { key: "occurred_at", label: "When", format: (t) => when(t.occurred_at), value: (t) => t.occurred_at },
      { key: "account", label: "Account" },
      { key: "symbol", label: "Symbol" },
      { key: "exchange", label: "Exchange" },
      { key: "kind", label: "Kind" },
      { key: "quantity", label: "Quantity", numeric: true, format: (t) => quantity(t.quantity) },
      { key: "price", label: "Price", numeric: true, format: (t) => (t.price === null ? "—" : money(t.price, t.currency)) },
      { key: "origin", label: "Origin" },
    ],
    rows: items.map((t) => ({ ...t, account: accounts[t.account_id]?.label || t.account_id })),
    empty: "No transaction matches these filters.",
  });
}

async function show() {
  const params = query(cursors[page]);
  const answer = await api(`/transactions?${params}`);
  fill(byId("transactions"), table(answer.items));
  if (answer.next_cursor) cursors[page + 1] = answer.next_cursor;
  byId("next-page").hidden = !answer.next_cursor;
  byId("previous-page").hidden = page === 0;
  byId("page-number").textContent = `Page ${page + 1}: ${answer.items.length} transaction(s)${answer.next_cursor ? ", more on the next page" : ""}.`;
  params.delete("cursor");
  if (params.get("limit") === DEFAULT_LIMIT) params.delete("limit"); // an address without filters stays bare
  history.replaceState(null, "", params.toString() ? `?${params}` : location.pathname);
}

function run(action) {
  action().catch(sayError);
}

async function drawChoices() {
  const portfolios = await allPages("/portfolios");
  const lists = await Promise.all(portfolios.map((p) => allPages(`/portfolios/${encodeURIComponent(p.id)}/accounts`)));
  accounts = Object.fromEntries(lists.flat().map((a) => [a.id, a]));
  const wanted = new URLSearchParams(location.search);
  field("portfolio_id").append(...portfolios.map((p) => h("option", { value: p.id }, p.name)));
  field("account_id").append(...Object.values(accounts).map((a) => h("option", { value: a.id }, a.label)));
  for (const name of FIELDS) {
    const value = wanted.get(name);
    if (value === null) continue;
    // Times come back in the address as ISO; the inputs take local "YYYY-MM-DDTHH:MM".
    if (name === "from" || name === "to") {
      const moment = new Date(value);
      if (!Number.isNaN(moment.getTime())) {
        field(name).value = new Date(moment.getTime() - moment.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
      }
    } else {
      field(name).value = value;
    }
  }
}

start(async () => {
  await signedIn();
  await drawChoices();
  byId("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    cursors = [null];
    page = 0;
    run(show);
  });
  byId("next-page").addEventListener("click", () => {
    page += 1;
    run(show);
  });
  byId("previous-page").addEventListener("click", () => {
    page -= 1;
    run(show);
  });
  await show();
});
