// An account's schedule (services/api/routes/schedules.py): what it is, its next runs, and a form
// that replaces it (PUT: interval, cron + zone, or once), pauses or resumes it (PATCH `enabled`).

import { api, ApiError } from "./api.js";
import { fill, h, when } from "./dom.js";

const STATES = {
  active: "Active",
  paused: "Paused (by you)",
  ended: "Ended: no more runs are coming",
  paused_by_operator: "Held back: an operator paused this broker",
};

let made = 0;

function every(seconds) {
  const units = [
    [86400, "day"],
    [3600, "hour"],
    [60, "minute"],
  ];
  for (const [size, name] of units) {
    if (seconds % size === 0) {
      const count = seconds / size;
      return count === 1 ? `every ${name}` : `every ${count} ${name}s`;
    }
  }
  return `every ${seconds} seconds`;
}

function ruleInWords(schedule) {
  if (schedule.kind === "interval") return `Syncs ${every(schedule.interval_seconds)}.`;
  if (schedule.kind === "cron") return `Syncs at cron "${schedule.cron}" in ${schedule.timezone}.`;
  return `Syncs once, at ${when(schedule.run_at)}.`;
}

// Draw the schedule of `account` into `box`, drawn anew after each change.
export async function drawSchedule(box, account) {
  const path = `/accounts/${encodeURIComponent(account.id)}/schedule`;
  let schedule = null;
  try {
    schedule = await api(path);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
  }
  const id = `schedule-${++made}`;
  const message = h("p", { class: "status", role: "status", "aria-live": "polite" });

  async function save(request, done) {
    try {
      await api(path, request);
      await drawSchedule(box, account);
      box.querySelector("p.status").textContent = done;
    } catch (error) {
      message.className = "status status-error";
      message.textContent = error.message;
    }
  }

  const summary = schedule
    ? [
        h("p", {}, ruleInWords(schedule), " ", h("strong", {}, STATES[schedule.state] || schedule.state), "."),
        schedule.paused_by_operator ? h("p", { class: "warn" }, `Operator's note: ${schedule.paused_by_operator}`) : null,
        schedule.next_runs.length
          ? h(
              "div",
              {},
              h("p", { id: `${id}-next` }, "Next runs:"),
              h("ol", { "aria-labelledby": `${id}-next`, class: "next-runs" }, schedule.next_runs.map((t) => h("li", {}, when(t)))),
            )
          : h("p", { class: "hint" }, "No run is coming."),
        h(
          "p",
          { class: "hint" },
          `Fired ${schedule.run_count} time(s)`,
          schedule.last_run_at ? `, last at ${when(schedule.last_run_at)}` : "",
          ".",
        ),
        h(
          "button",
          {
            type: "button",
            class: "secondary",
            onclick: () =>
              save(
                { method: "PATCH", json: { enabled: !schedule.enabled } },
                schedule.enabled ? "Schedule paused." : "Schedule resumed.",
              ),
          },
          schedule.enabled ? "Pause schedule" : "Resume schedule",
        ),
      ]
    : h("p", {}, "No schedule: this account syncs only when you ask.");

  fill(box, h("h4", {}, "Schedule"), summary, message, editor(id, schedule, save));
}

function editor(id, schedule, save) {
  const kind = h(
    "select",
    { id: `${id}-kind` },
    ["interval", "cron", "once"].map((k) =>
      h("option", { value: k, selected: (schedule?.kind || "interval") === k }, { interval: "Every N minutes", cron: "Cron expression", once: "Once" }[k]),
    ),
  );
  const minutes = h("input", {
    id: `${id}-minutes`,
    type: "number",
    min: "1",
    step: "1",
    value: schedule?.interval_seconds ? String(Math.round(schedule.interval_seconds / 60)) : "60",
  });
  const cron = h("input", { id: `${id}-cron`, type: "text", value: schedule?.cron || "0 9 * * 1-5", spellcheck: "false" });
  const zone = h("input", {
    id: `${id}-zone`,
    type: "text",
    value: schedule?.timezone || Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC",
  });
  const runAt = h("input", { id: `${id}-run-at`, type: "datetime-local" });
  const groups = {
    interval: h("div", { class: "field" }, h("label", { for: minutes.id }, "Minutes between syncs"), minutes),
    cron: h(
      "div",
      { class: "field" },
      h("label", { for: cron.id }, "Cron (minute hour day month weekday)"),
      cron,
      h("label", { for: zone.id }, "Time zone (IANA, e.g. Asia/Kolkata)"),
      zone,
    ),
    once: h("div", { class: "field" }, h("label", { for: runAt.id }, "Run at (your local time)"), runAt),
  };
  function showKind() {
    for (const [name, group] of Object.entries(groups)) group.hidden = name !== kind.value;
  }
  kind.addEventListener("change", showKind);
  showKind();

  function body() {
    const enabled = schedule ? schedule.enabled : true;
    if (kind.value === "interval") return { kind: "interval", interval_seconds: Math.round(Number(minutes.value) * 60), enabled };
    if (kind.value === "cron") return { kind: "cron", cron: cron.value.trim(), timezone: zone.value.trim(), enabled };
    const moment = new Date(runAt.value);
    return { kind: "once", run_at: Number.isNaN(moment.getTime()) ? runAt.value : moment.toISOString(), enabled };
  }

  return h(
    "details",
    {},
    h("summary", {}, schedule ? "Change the schedule" : "Give it a schedule"),
    h(
      "form",
      {
        onsubmit: (event) => {
          event.preventDefault();
          save({ method: "PUT", json: body() }, "Schedule saved.");
        },
      },
      h("label", { for: kind.id }, "Kind"),
      kind,
      Object.values(groups),
      h("button", { type: "submit" }, "Save schedule"),
    ),
  );
}
