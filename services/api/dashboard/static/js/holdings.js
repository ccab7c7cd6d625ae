// The holdings page (where sign-in lands): the consolidated positions of one portfolio or of all of
// them, allocation charts and value over time. Amounts in different currencies are never added
// together: totals are per currency, and the charts show the currency picked.

import { allPages, api } from "./api.js";
import { chart, PALETTE } from "./charts.js";
import { byId, fill, h, money, quantity, say, sayError, sortableTable, when } from "./dom.js";
import { signedIn, start } from "./layout.js";

const ALL = "all";
const TOP = 10;
const DAY_MS = 24 * 3600 * 1000;

const state = { portfolios: [], rows: [], currency: null };
// Each load and history request counts; an answer that a newer one overtook is dropped.
const latest = { load: 0, history: 0 };

start(async () => {
  await signedIn();
  state.portfolios = await allPages("/portfolios");
  if (!state.portfolios.length) {
    emptyState("You have no portfolio yet. Create one and add a broker account to it on the Accounts page.");
    return;
  }
  const picker = byId("portfolio");
  fill(
    picker,
    h("option", { value: ALL }, "All portfolios"),
    state.portfolios.map((portfolio) => h("option", { value: portfolio.id }, portfolio.name)),
  );
  const wanted = new URLSearchParams(location.search).get("portfolio");
  if (state.portfolios.some((portfolio) => portfolio.id === wanted)) picker.value = wanted;
  picker.addEventListener("change", () => {
    // The portfolio's id (never the token) in the address, so a reload shows the same one.
    history.replaceState(null, "", picker.value === ALL ? "holdings.html" : `holdings.html?portfolio=${picker.value}`);
    load().catch(sayError);
  });
  byId("currency").addEventListener("change", () => {
    state.currency = byId("currency").value;
    drawCharts();
    loadHistory().catch(sayError);
  });
  byId("range").addEventListener("change", () => loadHistory().catch(sayError));
  byId("scope").addEventListener("submit", (event) => event.preventDefault());
  byId("history-range").addEventListener("submit", (event) => event.preventDefault());
  byId("scope").hidden = false;
  await load();
});

function chosenPortfolios() {
  const picked = byId("portfolio").value;
  return picked === ALL ? state.portfolios : state.portfolios.filter((portfolio) => portfolio.id === picked);
}

function portfolioPath(portfolio, rest) {
  return `/portfolios/${encodeURIComponent(portfolio.id)}/${rest}`;
}

async function load() {
  say("Loading holdings…");
  const chosen = chosenPortfolios();
  const mine = ++latest.load;
  const [lines, accountLists] = await Promise.all([
    Promise.all(chosen.map((portfolio) => api(portfolioPath(portfolio, "holdings")))),
    Promise.all(chosen.map((portfolio) => allPages(portfolioPath(portfolio, "accounts")))),
  ]);
  if (mine !== latest.load) return;
  const accounts = accountLists.flat();
  const where = chosen.length === 1 ? `The portfolio “${chosen[0].name}”` : "None of your portfolios";
  if (!accounts.length) {
    emptyState(`${where} has no broker account yet. Add one on the Accounts page: a broker such as sim, or csv to upload statements.`);
    return;
  }
  if (!accounts.some((account) => account.positions_as_of)) {
    emptyState(
      "Your accounts have not synced yet. On the Accounts page, give an account its credentials and press “Sync now” " +
        "(or upload a statement to a csv account); its holdings show here once the sync ends.",
    );
    return;
  }
  byId("empty").hidden = true;
  byId("content").hidden = false;
  const labels = new Map(accounts.map((account) => [account.id, account.label]));
  state.rows = consolidate(lines.flat()).map((line) => row(line, labels));
  drawAsOf(accounts);
  drawTable();
  drawCurrencyPicker();
  drawCharts();
  await loadHistory();
  if (mine !== latest.load) return;
  say(`${state.rows.length} holding${state.rows.length === 1 ? "" : "s"} in ${accounts.length} account${accounts.length === 1 ? "" : "s"}.`, "success");
}

function emptyState(text) {
  byId("content").hidden = true;
  byId("empty").hidden = false;
  byId("empty-text").textContent = text;
  say("");
}

// --- positions ---------------------------------------------------------------------------------

// One line per (symbol, exchange, currency) across the chosen portfolios: each portfolio's lines
// are consolidated by the API already; the same instrument in two portfolios is merged here.
function consolidate(lines) {
  const groups = new Map();
  for (const line of lines) {
    const key = JSON.stringify([line.symbol, line.exchange, line.currency]);
    groups.set(key, [...(groups.get(key) || []), line]);
  }
  return [...groups.values()].map((group) => (group.length === 1 ? group[0] : merged(group)));
}

function merged(group) {
  const accounts = group.flatMap((line) => line.accounts);
  const weight = accounts.reduce((total, share) => total + Math.abs(Number(share.quantity)), 0);
  const cost = accounts.reduce((total, share) => total + Math.abs(Number(share.quantity)) * Number(share.average_price), 0);
  // The freshest quote wins, as in the API's own consolidation.
  const newest = (line) => Math.max(...line.accounts.map((share) => Date.parse(share.as_of)));
  const priced = group.filter((line) => line.last_price !== null).sort((a, b) => newest(b) - newest(a));
  const total = accounts.reduce((sum, share) => sum + Number(share.quantity), 0);
  const last = priced.length ? priced[0].last_price : null;
  return {
    ...group[0],
    accounts,
    quantity: total,
    average_price: weight ? cost / weight : null,
    last_price: last,
    market_value: last === null ? null : total * Number(last),
  };
}

function row(line, labels) {
  const number = (value) => (value === null || value === undefined ? null : Number(value));
  const [amount, average, last, value] = [line.quantity, line.average_price, line.last_price, line.market_value].map(number);
  const gain = value === null || average === null ? null : value - amount * average;
  const cost = average === null ? null : amount * average;
  const shares = line.accounts.map((share) => ({
    label: labels.get(share.account_id) ?? "an account",
    quantity: Number(share.quantity),
  }));
  return {
    symbol: line.symbol,
    exchange: line.exchange,
    currency: line.currency,
    assetType: line.asset_type,
    accounts: shares.map((share) => share.label).join(", "),
    shares,
    quantity: amount,
    average,
    last,
    value,
    gain,
    gainPercent: gain === null || !cost ? null : (gain / Math.abs(cost)) * 100,
  };
}

function drawAsOf(accounts) {
  const synced = accounts.filter((account) => account.positions_as_of);
  const newest = Math.max(...synced.map((account) => Date.parse(account.positions_as_of)));
  const waiting = accounts.filter((account) => !account.positions_as_of).map((account) => account.label);
  byId("positions-as-of").textContent =
    `As each account stood at its last sync (the latest: ${when(new Date(newest).toISOString())}).` +
    (waiting.length ? ` Not synced yet: ${waiting.join(", ")}.` : "");
}

const orNone = (value) => (value === null ? -Infinity : value);

function signed(amount, currency) {
  if (amount === null) return "—";
  return `${amount > 0 ? "+" : ""}${money(amount, currency)}`;
}

function percent(value) {
  if (value === null || !Number.isFinite(value)) return "—";
  return `${value > 0 ? "+" : ""}${value.toFixed(2)}\u00a0%`;
}

function tone(amount) {
  return amount > 0 ? "good" : amount < 0 ? "bad" : undefined;
}

function drawTable() {
  const columns = [
    { key: "symbol", label: "Symbol" },
    { key: "exchange", label: "Exchange" },
    { key: "accounts", label: "Account(s)" },
    { key: "currency", label: "Currency" },
    { key: "quantity", label: "Quantity", numeric: true, format: (r) => quantity(r.quantity) },
    { key: "average", label: "Average price", numeric: true, value: (r) => orNone(r.average), format: (r) => (r.average === null ? "—" : money(r.average, r.currency)) },
    { key: "last", label: "Last price", numeric: true, value: (r) => orNone(r.last), format: (r) => (r.last === null ? "—" : money(r.last, r.currency)) },
    { key: "value", label: "Value", numeric: true, value: (r) => orNone(r.value), format: (r) => (r.value === null ? "—" : money(r.value, r.currency)) },
    { key: "gain", label: "Unrealised gain", numeric: true, value: (r) => orNone(r.gain), format: (r) => h("span", { class: tone(r.gain) }, signed(r.gain, r.currency)) },
    { key: "gainPercent", label: "Gain %", numeric: true, value: (r) => orNone(r.gainPercent), format: (r) => h("span", { class: tone(r.gainPercent) }, percent(r.gainPercent)) },
  ];
  const filter = byId("filter");
  filter.value = "";
  fill(
    byId("holdings-table"),
    sortableTable({
      caption: "Positions, with totals per currency",
      columns,
      rows: state.rows,
      filter,
      footer: (shown) => totalsRows(shown, columns.length),
      empty: "Nothing held (or nothing matches the filter).",
    }),
  );
}

function totalsRows(shown, width) {
  return currenciesOf(shown).map((currency) => {
    const lines = shown.filter((r) => r.currency === currency);
    const value = sum(lines.map((r) => r.value));
    const gain = sum(lines.map((r) => r.gain));
    const cost = sum(lines.map((r) => (r.gain === null ? null : r.value - r.gain)));
    return h(
      "tr",
      { class: "totals" },
      h("th", { scope: "row", colspan: width - 3 }, `Total in ${currency}`),
      h("td", { class: "numeric" }, money(value, currency)),
      h("td", { class: "numeric" }, h("span", { class: tone(gain) }, signed(gain, currency))),
      h("td", { class: "numeric" }, percent(cost ? (gain / Math.abs(cost)) * 100 : null)),
    );
  });
}

function sum(values) {
  return values.reduce((total, value) => total + (value ?? 0), 0);
}

// Currencies, the most held first.
function currenciesOf(rows) {
  const counts = new Map();
  for (const r of rows) counts.set(r.currency, (counts.get(r.currency) || 0) + 1);
  return [...counts.keys()].sort((a, b) => counts.get(b) - counts.get(a) || a.localeCompare(b));
}

// --- allocation --------------------------------------------------------------------------------

function drawCurrencyPicker() {
  const currencies = currenciesOf(state.rows.filter((r) => r.value !== null));
  if (!currencies.includes(state.currency)) state.currency = currencies[0] ?? null;
  const picker = byId("currency");
  fill(picker, currencies.map((currency) => h("option", { value: currency }, currency)));
  picker.disabled = currencies.length < 2;
  if (state.currency) picker.value = state.currency;
}

function drawCharts() {
  const currency = state.currency;
  const priced = state.rows.filter((r) => r.currency === currency && r.value !== null);
  const byAccount = new Map();
  const byType = new Map();
  for (const r of priced) {
    for (const share of r.shares) add(byAccount, share.label, share.quantity * r.last);
    add(byType, r.assetType, r.value);
  }
  const inCurrency = (value) => money(value, currency);
  drawAllocation("by-account", "doughnut", descending(byAccount), inCurrency, currency);
  drawAllocation("by-asset-type", "doughnut", descending(byType), inCurrency, currency);
  const count = new Map(currenciesOf(state.rows).map((c) => [c, state.rows.filter((r) => r.currency === c).length]));
  drawAllocation("by-currency", "doughnut", [...count], (n) => `${n} holding${n === 1 ? "" : "s"}`, null);
  const top = [...priced].sort((a, b) => b.value - a.value).slice(0, TOP);
  drawAllocation("top-holdings", "bar", top.map((r) => [`${r.symbol} (${r.exchange})`, r.value]), inCurrency, currency);
}

function add(totals, key, amount) {
  totals.set(key, (totals.get(key) || 0) + amount);
}

function descending(totals) {
  return [...totals].sort((a, b) => b[1] - a[1]);
}

function drawAllocation(id, type, entries, format, currency) {
  const figure = byId(id);
  const labels = entries.map(([label]) => label);
  const values = entries.map(([, value]) => value);
  const total = sum(values);
  chart(figure.querySelector("canvas"), {
    type,
    data: {
      labels,
      datasets: [
        {
          label: currency ? `Value (${currency})` : "Holdings",
          data: values,
          backgroundColor: labels.map((_, i) => PALETTE[i % PALETTE.length]),
        },
      ],
    },
    options: {
      indexAxis: type === "bar" ? "y" : "x",
      plugins: {
        legend: { display: type !== "bar", position: "bottom" },
        tooltip: { callbacks: { label: (item) => `${item.label}: ${format(item.raw)}` } },
      },
    },
  });
  const figures = figure.querySelector(".figures");
  if (!entries.length) {
    fill(figures, h("p", { class: "hint" }, currency ? `Nothing priced in ${currency}.` : "Nothing held."));
    return;
  }
  const share = (value) => (total ? `${((value / total) * 100).toFixed(1)}\u00a0%` : "—");
  const head = h(
    "tr",
    {},
    h("th", { scope: "col" }, "Name"),
    h("th", { scope: "col", class: "numeric" }, currency ? "Value" : "Count"),
    h("th", { scope: "col", class: "numeric" }, "Share"),
  );
  const lines = entries.map(([label, value]) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, label),
      h("td", { class: "numeric", "data-value": value }, format(value)),
      h("td", { class: "numeric" }, share(value)),
    ),
  );
  const caption = h("caption", { class: "visually-hidden" }, figure.querySelector("figcaption").textContent);
  fill(
    figures,
    h("div", { class: "table-scroll" }, h("table", { class: "data compact" }, caption, h("thead", {}, head), h("tbody", {}, lines))),
  );
}

// --- value over time ---------------------------------------------------------------------------

async function loadHistory() {
  const range = byId("range").value;
  const query = range === ALL ? "" : `?since=${encodeURIComponent(new Date(Date.now() - Number(range) * DAY_MS).toISOString())}`;
  const chosen = chosenPortfolios();
  const mine = ++latest.history;
  const answers = await Promise.all(chosen.map((portfolio) => api(portfolioPath(portfolio, `valuations${query}`))));
  if (mine !== latest.history) return;
  drawHistory(combined(answers.map((answer) => answer.points), state.currency), state.currency);
}

// The sum of several portfolios' series in one currency: at each time a portfolio's point falls,
// every portfolio counts with its latest value.
function combined(series, currency) {
  const events = series.flatMap((points, index) =>
    points.filter((p) => p.currency === currency).map((p) => ({ at: Date.parse(p.at), index, value: Number(p.value) })),
  );
  events.sort((a, b) => a.at - b.at);
  const latest = new Map();
  const points = [];
  for (const event of events) {
    latest.set(event.index, event.value);
    const value = sum([...latest.values()]);
    if (points.length && points[points.length - 1].x === event.at) points[points.length - 1].y = value;
    else points.push({ x: event.at, y: value });
  }
  return points;
}

// Dates on the time axis; times of day too when the points span less than two days.
function tickLabel(points) {
  const span = points.length ? points[points.length - 1].x - points[0].x : 0;
  return (moment) =>
    span < 2 * DAY_MS
      ? new Date(moment).toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" })
      : new Date(moment).toLocaleDateString();
}

function drawHistory(points, currency) {
  chart(byId("history-chart"), {
    type: "line",
    data: {
      datasets: [
        {
          label: currency ? `Value (${currency})` : "Value",
          data: points,
          borderColor: PALETTE[0],
          backgroundColor: PALETTE[0],
          pointRadius: points.length > 60 ? 0 : 3,
        },
      ],
    },
    options: {
      scales: {
        x: { type: "linear", ticks: { maxTicksLimit: 6, callback: tickLabel(points) } },
        y: { ticks: { callback: (value) => money(value, currency) } },
      },
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            title: (items) => when(new Date(items[0].parsed.x).toISOString()),
            label: (item) => money(item.parsed.y, currency),
          },
        },
      },
    },
  });
  const summary = byId("history-summary");
  if (!points.length) {
    summary.textContent = currency ? `No value in ${currency} recorded in this range yet.` : "Nothing held yet.";
  } else {
    const [first, last] = [points[0], points[points.length - 1]];
    const change = last.y - first.y;
    summary.textContent =
      `From ${money(first.y, currency)} on ${when(new Date(first.x).toISOString())} to ${money(last.y, currency)} on ` +
      `${when(new Date(last.x).toISOString())}: ${signed(change, currency)} (${percent(first.y ? (change / first.y) * 100 : null)}), ` +
      `${points.length} point${points.length === 1 ? "" : "s"}.`;
  }
  fill(
    byId("history-table"),
    sortableTable({
      caption: `Value over time in ${currency ?? "—"}`,
      columns: [
        { key: "x", label: "Time", numeric: true, format: (p) => when(new Date(p.x).toISOString()) },
        { key: "y", label: "Value", numeric: true, format: (p) => money(p.y, currency) },
      ],
      rows: points,
      empty: "No points in this range.",
    }),
  );
}
