// One account on the accounts page: its sync state, new credentials when the broker wants them,
// "sync now" with its run followed live, its schedule, and removal (with a confirm step).

import { api } from "./api.js";
import { clearCredentialFields, credentialValues, drawCredentialFields } from "./credential-fields.js";
import { fill, h, say, sayError, when } from "./dom.js";
import { drawSchedule } from "./schedule-editor.js";
import { ENDED, followRun, lastErrorInWords, runInWords } from "./sync-runs.js";

let made = 0;

function accountPath(account, rest = "") {
  return `/accounts/${encodeURIComponent(account.id)}${rest}`;
}

// A <section> for `account`; `brokers` by code; `refresh` redraws the page's list.
export function accountCard(account, brokers, refresh) {
  const id = `account-${++made}`;
  const card = h("section", { class: "panel account", "aria-labelledby": `${id}-title`, "data-account": account.id });
  const live = h("p", { class: "status", id: `${id}-run`, role: "status", "aria-live": "polite" });

  async function redraw() {
    const fresh = await api(accountPath(account));
    fill(card, ...parts(fresh));
  }

  function parts(current) {
    const isStatement = brokers[current.broker]?.sync === "statement" || current.broker === "csv";
    return [
      h("h3", { id: `${id}-title` }, current.label, " ", h("span", { class: "hint" }, `(${brokers[current.broker]?.name || current.broker})`)),
      syncState(current, isStatement),
      current.held_snapshot ? heldNotice(current) : null,
      isStatement ? null : credentialsForm(current, brokers[current.broker], id, redraw),
      isStatement
        ? h("p", {}, h("a", { href: `statements.html?account=${encodeURIComponent(current.id)}` }, "Upload a statement"))
        : current.needs_reauth
          ? null // the API refuses a sync until new credentials are set (the form above)
          : syncNow(current, live, redraw),
      live,
      isStatement ? null : scheduleBox(current),
      removal(current, refresh),
    ];
  }

  fill(card, ...parts(account));
  return card;
}

function syncState(account, isStatement) {
  const rows = [
    ["Last success", account.last_success_at ? when(account.last_success_at) : "never"],
    ["Last attempt", account.last_attempt_at ? when(account.last_attempt_at) : "never"],
    ["Positions as of", account.positions_as_of ? when(account.positions_as_of) : "no positions yet"],
  ];
  if (!isStatement) rows.push(["Credentials", account.has_credentials ? "stored (never shown)" : "none stored"]);
  if (account.paused_by_operator) rows.push(["Broker paused by an operator", account.paused_by_operator]);
  if (account.last_error) {
    const { sentence, details } = lastErrorInWords(account.last_error);
    rows.push(["Last error", h("span", { class: "bad" }, sentence, details ? h("span", { class: "hint" }, ` Details: ${details}`) : "")]);
    if (account.consecutive_failures) rows.push(["Failures in a row", String(account.consecutive_failures)]);
  }
  return h(
    "dl",
    { class: "facts" },
    rows.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
  );
}

function heldNotice(account) {
  const held = account.held_snapshot;
  return h(
    "p",
    { class: "warn held" },
    `A snapshot of ${when(held.taken_at)} is held for review`,
    held.reason ? ` (${held.reason})` : "",
    ": ",
    h("a", { href: `review.html?account=${encodeURIComponent(account.id)}` }, "review it"),
    ".",
  );
}

// New credentials: open, with the reason, when the broker rejected the stored ones (or they cannot
// be decrypted); otherwise folded away, for replacing a key before it expires.
function credentialsForm(account, broker, id, redraw) {
  const rejected = account.needs_reauth || account.last_error?.startsWith("unreadable_credentials");
  const fields = h("div", { id: `${id}-credentials` });
  if (broker) drawCredentialFields(fields, broker);
  const form = h(
    "form",
    {
      class: "credentials-form",
      onsubmit: async (event) => {
        event.preventDefault();
        const credentials = credentialValues(fields);
        clearCredentialFields(fields); // write-only: gone from the page whatever the answer
        try {
          await api(accountPath(account, "/credentials"), { method: "PUT", json: { credentials } });
          say(`New credentials saved for ${account.label}${rejected ? ": syncs resume" : ""}.`, "success");
          await redraw();
        } catch (error) {
          sayError(error);
        }
      },
    },
    rejected
      ? h("p", { class: "bad" }, "The broker rejected this account's credentials. Enter new ones (they are never shown back).")
      : null,
    fields,
    h("button", { type: "submit" }, "Save new credentials"),
  );
  if (rejected) return form;
  if (!broker || broker.credential_fields.length + broker.optional_credential_fields.length === 0) return null;
  return h("details", {}, h("summary", {}, "Replace the credentials"), form);
}

function syncNow(account, live, redraw) {
  const button = h("button", { type: "button", class: "sync-now" }, "Sync now");
  button.addEventListener("click", async () => {
    button.disabled = true;
    live.className = "status";
    live.textContent = "Requesting a sync…";
    try {
      const accepted = await api(accountPath(account, "/sync"), { method: "POST" });
      const run = await followRun(account.id, accepted.request_id, (current) => {
        live.className = `status ${current.status === "failed" ? "status-error" : current.status === "succeeded" ? "status-success" : ""}`;
        live.textContent = runInWords(current);
      });
      if (!run || !ENDED.has(run.status)) {
        live.textContent = "The sync is taking longer than usual: it goes on, and this page shows it when you reload.";
      }
      await redraw(); // the same live region is drawn again, with the run's last word
    } catch (error) {
      live.className = "status status-error";
      live.textContent = error.message;
      // A refusal (409) comes from a state this card may not show yet, say a scheduled sync that
      // found the credentials rejected meanwhile: show the account as it is now.
      redraw().catch(sayError);
    } finally {
      button.disabled = false;
    }
  });
  return h("div", { class: "actions" }, button);
}

function scheduleBox(account) {
  const box = h("div", { class: "schedule" }, h("p", { class: "hint" }, "Loading the schedule…"));
  drawSchedule(box, account).catch((error) => fill(box, h("p", { class: "bad" }, error.message)));
  return box;
}

function removal(account, refresh) {
  const confirmBox = h(
    "div",
    { class: "confirm", hidden: true, role: "group", "aria-label": `Confirm removing ${account.label}` },
    h("p", {}, `Remove "${account.label}" with its credentials, schedule, sync history, snapshots and transactions? This cannot be undone.`),
  );
  const ask = h("button", { type: "button", class: "secondary" }, "Remove account…");
  const cancel = h("button", { type: "button", class: "secondary" }, "Keep it");
  const really = h("button", { type: "button", class: "danger" }, `Yes, remove ${account.label}`);
  ask.addEventListener("click", () => {
    confirmBox.hidden = false;
    ask.hidden = true;
    cancel.focus();
  });
  cancel.addEventListener("click", () => {
    confirmBox.hidden = true;
    ask.hidden = false;
    ask.focus();
  });
  really.addEventListener("click", async () => {
    really.disabled = true;
    try {
      await api(accountPath(account), { method: "DELETE" });
      say(`Removed ${account.label}.`, "success");
      await refresh();
    } catch (error) {
      really.disabled = false;
      sayError(error);
    }
  });
  confirmBox.append(h("div", { class: "actions" }, really, cancel));
  return h("div", { class: "removal" }, ask, confirmBox);
}
