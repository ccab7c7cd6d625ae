// review.html?account=<id>: the snapshot the ledger held for an account (it looked like an error),
// beside the account's current positions, with Accept and Dismiss (POST .../held-snapshot/accept or
// /dismiss). The ledger carries the decision out; the page waits until the account holds it no more.

import { api } from "./api.js";
import { byId, fill, h, quantity, say, sayError, sortableTable, when } from "./dom.js";
import { signedIn, start } from "./layout.js";

const accountId = new URLSearchParams(location.search).get("account") || "";
const accountPath = `/accounts/${encodeURIComponent(accountId)}`;

function key(line) {
  return `${line.symbol}\u0000${line.exchange}`;
}

// One row per instrument in either list: current and reported quantity, and what changed.
function sideBySide(current, reported) {
  const rows = new Map();
  for (const line of current) rows.set(key(line), { symbol: line.symbol, exchange: line.exchange, current: line.quantity, reported: null });
  for (const line of reported) {
    const row = rows.get(key(line)) || { symbol: line.symbol, exchange: line.exchange, current: null, reported: null };
    row.reported = line.quantity;
    rows.set(key(line), row);
  }
  return [...rows.values()].map((row) => {
    const difference = Number(row.reported ?? 0) - Number(row.current ?? 0);
    const change = row.reported === null ? "gone" : row.current === null ? "added" : difference ? "changed" : "same";
    return { ...row, difference, change };
  });
}

const CHANGE_WORDS = { gone: "not reported", added: "new", changed: "changed", same: "unchanged" };

function comparison(rows) {
  return sortableTable({
    caption: "Current positions against what the held snapshot reports",
    columns: [
      { key: "symbol", label: "Symbol" },
      { key: "exchange", label: "Exchange" },
      { key: "current", label: "Current quantity", numeric: true, format: (r) => (r.current === null ? "—" : quantity(r.current)) },
      { key: "reported", label: "Reported quantity", numeric: true, format: (r) => (r.reported === null ? "—" : quantity(r.reported)) },
      {
        key: "difference",
        label: "Difference",
        numeric: true,
        format: (r) => (r.difference ? `${r.difference > 0 ? "+" : ""}${quantity(r.difference)}` : "0"),
      },
      { key: "change", label: "Change", format: (r) => h("span", { class: r.change === "same" ? "" : "change" }, CHANGE_WORDS[r.change]) },
    ],
    rows,
    // Highlighted by what changed; the Change column says it in words for those who do not see colour.
    rowClass: (r) => (r.change === "same" ? undefined : r.change),
  });
}

const DECISIONS = {
  accept: { sent: "Accepted: the ledger is applying the snapshot…", done: "Accepted: the snapshot is now the positions of" },
  dismiss: { sent: "Dismissed: the ledger is dropping the snapshot…", done: "Dismissed: the positions stay as they were for" },
};

async function decide(decision, account, held, buttons) {
  const words = DECISIONS[decision];
  buttons.forEach((b) => (b.disabled = true));
  try {
    await api(`${accountPath}/held-snapshot/${decision}`, { method: "POST", json: { snapshot_id: held.id } });
    say(words.sent);
    const deadline = Date.now() + 60000;
    while (Date.now() < deadline) {
      const fresh = await api(accountPath);
      if (!fresh.held_snapshot) {
        say(`${words.done} ${account.label}.`, "success");
        await draw();
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    say("Sent; the ledger has not carried it out yet: reload this page in a moment.", "warning");
  } catch (error) {
    sayError(error);
    buttons.forEach((b) => (b.disabled = false));
  }
}

async function draw() {
  const box = byId("review");
  const account = await api(accountPath);
  const held = account.held_snapshot;
  if (!held) {
    fill(box, h("p", {}, `${account.label} holds no snapshot for review: its positions are as the last sync or upload said.`));
    return;
  }
  const [current, snapshot] = await Promise.all([
    api(`${accountPath}/holdings`),
    api(`${accountPath}/snapshots/${encodeURIComponent(held.id)}`),
  ]);
  const rows = sideBySide(current, snapshot.holdings);
  const changed = rows.filter((r) => r.change !== "same").length;
  const isStatement = account.broker === "csv";
  const acceptButton = h("button", { type: "button" }, "Accept: this is what the account holds");
  const dismissButton = h("button", { type: "button", class: "secondary" }, "Dismiss: keep the current positions");
  const buttons = [acceptButton, dismissButton];
  acceptButton.addEventListener("click", () => decide("accept", account, held, buttons));
  dismissButton.addEventListener("click", () => decide("dismiss", account, held, buttons));
  fill(
    box,
    h("h2", {}, account.label),
    h(
      "p",
      {},
      `The ${isStatement ? "statement" : "broker"}'s snapshot of ${when(held.taken_at)} was held, not applied`,
      held.reason ? `: ${held.reason}.` : ".",
      ` ${changed} of ${rows.length} instrument(s) differ from the current positions.`,
    ),
    comparison(rows),
    h(
      "p",
      { class: "hint" },
      "Accept it if the account really holds only what it reports: the ledger applies it and derives the trades. ",
      "Otherwise dismiss it: it is kept in the history as dismissed and the positions stay as they are",
      isStatement ? " (then upload the complete statement)." : ".",
    ),
    h("div", { class: "actions" }, buttons),
  );
}

start(async () => {
  await signedIn();
  if (!/^[0-9a-f-]{36}$/i.test(accountId)) {
    say("Open this page from an account's \"review it\" link (the address names no account).", "error");
    return;
  }
  await draw();
});
