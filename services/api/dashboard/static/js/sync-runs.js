// A sync run in words, and following one until it ends (GET /v1/accounts/{id}/sync-runs).

import { api } from "./api.js";
import { when } from "./dom.js";

// What each failure kind means to the account's owner (shared/events.py FailureKind).
const FAILURE_SENTENCES = {
  auth: "The broker rejected the account's credentials: enter new ones to sync again.",
  transient: "The broker could not be reached or answered with an error; a later sync tries again.",
  rate_limited: "The broker asked us to slow down (its request limit); a later sync tries again.",
  invalid_response: "The broker's answer made no sense, so nothing was changed; a later sync tries again.",
  unreadable_credentials:
    "The stored credentials could not be decrypted: a problem with this deployment's keys, not yours. " +
    "Entering the credentials again also cures it.",
};

function failureInWords(kind) {
  return FAILURE_SENTENCES[kind] || "The sync failed.";
}

// An account's `last_error` ("kind: reason", as the ledger writes it) as a sentence and its details.
export function lastErrorInWords(lastError) {
  const [kind, ...rest] = String(lastError).split(": ");
  if (!(kind in FAILURE_SENTENCES)) return { sentence: "The last sync failed.", details: String(lastError) };
  return { sentence: FAILURE_SENTENCES[kind], details: rest.join(": ") };
}

const SNAPSHOT_OUTCOMES = {
  applied: "its holdings are now the account's positions",
  held: "the snapshot is held for review (it looks like an error): review it",
  late: "the snapshot was older than the positions shown, so it went to history only",
  dismissed: "the snapshot was dismissed (a later one contradicted it)",
};

export const ENDED = new Set(["succeeded", "failed"]);

export function runInWords(run) {
  const noun = run.trigger === "import" ? "Import" : "Sync";
  switch (run.status) {
    case "requested":
      return run.trigger === "import" ? "Import requested: waiting for the ledger…" : "Sync requested: waiting for a fetcher…";
    case "retrying":
      return `Attempt ${run.attempts} failed (${failureInWords(run.failure_kind)}) Retrying${
        run.next_attempt_at ? ` at ${when(run.next_attempt_at)}` : ""
      }…`;
    case "succeeded": {
      const outcome = SNAPSHOT_OUTCOMES[run.snapshot_status];
      return outcome ? `${noun} succeeded: ${outcome}.` : `${noun} succeeded: the ledger is recording the snapshot…`;
    }
    case "failed":
      return `${noun} failed: ${failureInWords(run.failure_kind)}${run.failure_reason ? ` (${run.failure_reason})` : ""}`;
    default:
      return `${noun} ${run.status}.`;
  }
}

// Poll the run (GET /v1/accounts/{id}/sync-runs/{run}) until it has ended and the ledger has said
// what became of its snapshot; `onChange` gets the run each time it changes. Resolves with the last
// run seen (which has not ended if `timeoutMs` passed first).
export async function followRun(accountId, runId, onChange, { intervalMs = 1000, timeoutMs = 120000 } = {}) {
  const path = `/accounts/${encodeURIComponent(accountId)}/sync-runs/${encodeURIComponent(runId)}`;
  const deadline = Date.now() + timeoutMs;
  let seen = "";
  let run = null;
  while (Date.now() < deadline) {
    run = await api(path);
    const shown = JSON.stringify(run);
    if (shown !== seen) onChange(run);
    seen = shown;
    if (run.status === "failed" || (run.status === "succeeded" && run.snapshot_status)) return run;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  return run;
}
