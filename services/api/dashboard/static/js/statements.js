// The statements page: upload a CSV statement into a `csv` account (POST
// /v1/accounts/{id}/statements, the file as the body). A rejected file (422) is shown line by line
// with each problem beside its line, read in the browser with File.text(); every line goes in as text.

import { allPages, api, ApiError } from "./api.js";
import { byId, fill, h, say, sayError } from "./dom.js";
import { signedIn, start } from "./layout.js";
import { followRun, runInWords } from "./sync-runs.js";

const ALL_LINES_UP_TO = 200; // a longer file shows only its bad lines, with some context
const CONTEXT = 2;

async function drawChoices(selected) {
  const portfolios = await allPages("/portfolios");
  fill(byId("csv-portfolio"), portfolios.map((p) => h("option", { value: p.id }, p.name)));
  const lists = await Promise.all(
    portfolios.map(async (p) => (await allPages(`/portfolios/${encodeURIComponent(p.id)}/accounts`)).map((a) => ({ ...a, portfolio: p.name }))),
  );
  const statementAccounts = lists.flat().filter((a) => a.broker === "csv");
  const wanted = selected || new URLSearchParams(location.search).get("account");
  fill(
    byId("statement-account"),
    statementAccounts.map((a) => h("option", { value: a.id, selected: a.id === wanted }, `${a.label} (${a.portfolio})`)),
  );
  byId("upload").querySelector("button").disabled = !statementAccounts.length;
  if (!portfolios.length) say("Create a portfolio on the Accounts page first.", "warning");
  else if (!statementAccounts.length) say("No statement account yet: create one below.");
}

// The lines of the file to show: all of a short file; of a long one, the bad lines and their
// neighbours, with a gap marker where lines are left out.
function shownLineNumbers(count, bad) {
  if (count <= ALL_LINES_UP_TO) return Array.from({ length: count }, (_, i) => i + 1);
  const wanted = new Set([1]);
  for (const line of bad) {
    for (let n = line - CONTEXT; n <= line + CONTEXT; n++) if (n >= 1 && n <= count) wanted.add(n);
  }
  return [...wanted].sort((a, b) => a - b);
}

function fileWithProblems(text, problems) {
  const lines = text.split(/\r\n|\n|\r/);
  if (lines.length > 1 && lines[lines.length - 1] === "") lines.pop(); // the final line break
  const byLine = new Map();
  for (const problem of problems) {
    byLine.set(problem.line, [...(byLine.get(problem.line) || []), problem.message]);
  }
  const wholeFile = byLine.get(0) || [];
  const items = [];
  let previous = 0;
  for (const number of shownLineNumbers(lines.length, [...byLine.keys()].filter((n) => n > 0))) {
    if (number > previous + 1) items.push(h("li", { class: "gap" }, h("span", { class: "line-number" }, "…"), h("span", {}, `${number - previous - 1} line(s) without problems`)));
    const messages = byLine.get(number) || [];
    items.push(
      h(
        "li",
        { class: messages.length ? "bad-line" : undefined, "data-line": number },
        h("span", { class: "line-number" }, messages.length ? `✗ ${number}` : String(number)),
        h("span", { class: "line-text" }, lines[number - 1]),
        messages.map((message) => h("span", { class: "problem" }, `Line ${number}: ${message}`)),
      ),
    );
    previous = number;
  }
  const beyond = [...byLine.keys()].filter((n) => n > lines.length);
  return [
    wholeFile.length ? h("ul", { class: "bad" }, wholeFile.map((m) => h("li", {}, m))) : null,
    h("ol", { class: "statement-lines", "aria-label": "The file's lines, with the problems beside them" }, items),
    beyond.length ? h("ul", { class: "bad" }, beyond.map((n) => byLine.get(n).map((m) => h("li", {}, `Line ${n}: ${m}`)))) : null,
  ];
}

function showOutcome(...children) {
  byId("outcome").hidden = false;
  fill(byId("outcome-body"), ...children);
  byId("outcome").scrollIntoView({ block: "start" });
}

async function upload(event) {
  event.preventDefault();
  const accountId = byId("statement-account").value;
  const file = byId("statement-file").files[0];
  if (!accountId || !file) return;
  const text = await file.text();
  try {
    // The file itself is the body (its bytes, as the API reads them).
    const accepted = await api(`/accounts/${encodeURIComponent(accountId)}/statements`, {
      method: "POST",
      body: file,
      headers: { "Content-Type": "text/csv" },
    });
    const run = h("p", { class: "status", role: "status", "aria-live": "polite" }, "Import requested…");
    showOutcome(
      h(
        "p",
        {},
        `Accepted ${file.name}: ${accepted.holdings} holding(s), read as ${accepted.format}`,
        accepted.statement_date ? `, dated ${accepted.statement_date}` : "",
        ".",
      ),
      accepted.held_for_review
        ? h("p", { class: "warn" }, accepted.review || "It will be held for review.", " ", h("a", { href: `review.html?account=${encodeURIComponent(accountId)}` }, "Review it"), " once the import has run.")
        : null,
      run,
    );
    say(`Statement accepted: ${accepted.holdings} holding(s).`, "success");
    const last = await followRun(accountId, accepted.request_id, (current) => (run.textContent = runInWords(current)));
    if (last?.snapshot_status === "held") run.append(" ", h("a", { href: `review.html?account=${encodeURIComponent(accountId)}` }, "Review the held statement"));
  } catch (error) {
    if (error instanceof ApiError && error.status === 422 && Array.isArray(error.body?.problems)) {
      say(`${file.name} was not imported: ${error.body.detail}. Nothing was changed.`, "error");
      showOutcome(h("p", {}, `Each problem is shown beside its line of ${file.name}; correct them and upload the file again.`), fileWithProblems(text, error.body.problems));
    } else {
      sayError(error);
    }
  }
}

async function createStatementAccount(event) {
  event.preventDefault();
  try {
    const account = await api(`/portfolios/${encodeURIComponent(byId("csv-portfolio").value)}/accounts`, {
      method: "POST",
      json: { broker: "csv", label: byId("csv-label").value.trim() },
    });
    byId("csv-label").value = "";
    await drawChoices(account.id);
    say(`Created ${account.label}: upload its statement above.`, "success");
  } catch (error) {
    sayError(error);
  }
}

start(async () => {
  await signedIn();
  byId("upload").addEventListener("submit", (event) => upload(event).catch(sayError));
  byId("new-csv-account").addEventListener("submit", createStatementAccount);
  await drawChoices();
});
