// The accounts page: pick or create a portfolio, add broker accounts to it, and look after each
// account's syncing (account-card.js).

import { allPages, api } from "./api.js";
import { accountCard } from "./account-card.js";
import { clearCredentialFields, credentialValues, drawCredentialFields } from "./credential-fields.js";
import { byId, fill, h, say, sayError } from "./dom.js";
import { signedIn, start } from "./layout.js";

let brokers = {};

function chosenPortfolio() {
  return byId("portfolio").value;
}

async function drawPortfolios(selected) {
  const portfolios = await allPages("/portfolios");
  const wanted = selected || new URLSearchParams(location.search).get("portfolio");
  fill(
    byId("portfolio"),
    portfolios.map((p) => h("option", { value: p.id, selected: p.id === wanted }, p.name)),
  );
  byId("pick-portfolio").hidden = !portfolios.length;
  byId("add-section").hidden = !portfolios.length;
  if (!portfolios.length) say("Create a portfolio first: accounts belong to one.");
  await drawAccounts();
}

async function drawAccounts() {
  const portfolio = chosenPortfolio();
  const box = byId("accounts");
  if (!portfolio) {
    fill(box, h("p", { class: "hint" }, "No portfolio yet."));
    return;
  }
  const accounts = await allPages(`/portfolios/${encodeURIComponent(portfolio)}/accounts`);
  fill(
    box,
    accounts.length
      ? accounts.map((account) => accountCard(account, brokers, drawAccounts))
      : h("p", { class: "hint" }, "This portfolio has no accounts yet: add one below."),
  );
}

function drawBrokerChoice() {
  const select = byId("account-broker");
  fill(
    select,
    Object.values(brokers).map((b) => h("option", { value: b.code, selected: b.code === "sim" }, `${b.name} (${b.code})`)),
  );
  const showFields = () => {
    const broker = brokers[select.value];
    drawCredentialFields(byId("credential-fields"), broker);
    byId("new-credentials").hidden = broker.sync === "statement";
    byId("broker-hint").textContent =
      broker.sync === "statement"
        ? "Fed by the statements you upload (CSV): it has no schedule and no credentials."
        : "Synced from the broker on a schedule (first sync now). Credentials are stored encrypted and never shown again.";
  };
  select.addEventListener("change", showFields);
  showFields();
}

async function addAccount(event) {
  event.preventDefault();
  const fields = byId("credential-fields");
  const broker = byId("account-broker").value;
  const label = byId("account-label").value.trim();
  const credentials = credentialValues(fields);
  clearCredentialFields(fields); // write-only: gone from the page whatever happens next
  try {
    // The credentials go with the account, so that its first sync (due at once) has them.
    const account = await api(`/portfolios/${encodeURIComponent(chosenPortfolio())}/accounts`, {
      method: "POST",
      json: { broker, label, ...(Object.keys(credentials).length ? { credentials } : {}) },
    });
    byId("account-label").value = "";
    say(`Added ${account.label}.`, "success");
    await drawAccounts();
  } catch (error) {
    sayError(error);
  }
}

async function createPortfolio(event) {
  event.preventDefault();
  const field = byId("portfolio-name");
  try {
    const portfolio = await api("/portfolios", { method: "POST", json: { name: field.value.trim() } });
    field.value = "";
    say(`Created the portfolio ${portfolio.name}.`, "success");
    await drawPortfolios(portfolio.id);
  } catch (error) {
    sayError(error);
  }
}

start(async () => {
  await signedIn();
  brokers = Object.fromEntries((await api("/brokers")).map((b) => [b.code, b]));
  drawBrokerChoice();
  byId("new-portfolio").addEventListener("submit", createPortfolio);
  byId("add-account").addEventListener("submit", addAccount);
  byId("portfolio").addEventListener("change", () => {
    history.replaceState(null, "", `?portfolio=${encodeURIComponent(chosenPortfolio())}`); // kept on reload
    drawAccounts().catch(sayError);
  });
  await drawPortfolios();
});
