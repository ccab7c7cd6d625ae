// The operator page (Flower's counterpart): brokers with their fetchers and outcomes, fetchers,
// failures by kind, stuck runs, dead letters and consumer lag, from the `/v1/admin` routes; and the
// actions those routes offer: pause or resume a broker, request a stuck run again, replay dead letters.

import { api } from "./api.js";
import { chart, PALETTE } from "./charts.js";
import { byId, fill, h, say, sayError, sortableTable, when } from "./dom.js";
import { signedIn, start } from "./layout.js";

const REFRESH_MS = 15_000;
const FAILED_RUNS_READ = 200; // the newest failed runs, counted by kind
const STUCK_RUNS_SHOWN = 50;
const WINDOWS = [
  ["last_5_minutes", "Last 5 minutes"],
  ["last_hour", "Last hour"],
  ["last_day", "Last day"],
];
const FAILURE_KINDS = {
  auth: "Credentials rejected: the user must enter new ones",
  transient: "Broker unreachable or erroring",
  rate_limited: "Rate limited by the broker",
  invalid_response: "The broker answered something unreadable",
  unreadable_credentials: "No configured key opens the stored credentials",
};

start(async () => {
  const me = await signedIn();
  if (me.role !== "operator") {
    say("This page is for operators. Ask an operator if you need to see it.", "warning");
    return;
  }
  byId("operator-panels").hidden = false;
  byId("refresh-now").addEventListener("click", refresh);
  setInterval(() => {
    // Not in a hidden tab, nor while someone works in a panel (typing a reason, on a button):
    // redrawing would lose what they were doing.
    const working = document.activeElement?.closest(".panel");
    if (byId("auto-refresh").checked && !document.hidden && !working) refresh();
  }, REFRESH_MS);
  await refresh();
});

async function refresh() {
  const fetchers = api("/admin/fetchers");
  const stats = api("/admin/brokers/stats");
  // Each panel stands alone: one the API cannot answer (say, the bus is down) shows why, the rest draw.
  await Promise.all([
    panel("brokers", async () =>
      drawBrokers(await api("/admin/brokers"), await api("/brokers"), await stats, await fetchers),
    ),
    panel("outcomes", async () => drawOutcomes(await api("/admin/brokers/history"), await stats), "failed"),
    panel("fetchers", async () => drawFetchers(await fetchers), "fetchers"),
    panel("failures", async () => drawFailures(await api(`/admin/sync-runs?status=failed&limit=${FAILED_RUNS_READ}`))),
    panel("stuck-runs", async () => drawStuckRuns(await api(`/admin/stuck-runs?limit=${STUCK_RUNS_SHOWN}`)), "stuck"),
    panel("dead-letters", async () => drawDeadLetters(await api("/admin/dead-letters")), "dead-letters"),
    panel("lag", async () => drawLag(await api("/admin/lag")), "lag"),
  ]);
  byId("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

// Draw one panel; if its data cannot be had, say why there and show its tile (if any) as unknown
// rather than keep an old number.
async function panel(id, draw, tileId) {
  try {
    fill(byId(id), await draw());
  } catch (error) {
    fill(byId(id), h("p", { class: "status status-error" }, error instanceof Error ? error.message : String(error)));
    if (tileId) tile(tileId, "?", { bad: true });
  }
}

// An action's button: disabled while the request runs; the outcome goes to the status line.
async function act(button, action) {
  button.disabled = true;
  try {
    say(await action(), "success");
    await refresh();
  } catch (error) {
    sayError(error);
  } finally {
    button.disabled = false;
  }
}

// A number at the top of the page; `bad` marks one that needs looking at.
function tile(id, value, { bad = false, good = false } = {}) {
  const shown = byId(`tile-${id}`);
  shown.textContent = String(value);
  shown.className = bad ? "bad" : good ? "good" : "";
}

function counts(window) {
  return window ? `${window.succeeded} / ${window.failed}` : "0 / 0";
}

function drawBrokers(states, types, stats, fetchers) {
  const fetched = new Set(types.filter((t) => t.sync === "schedule").map((t) => t.code));
  const outcomes = new Map(stats.brokers.map((b) => [b.broker, b]));
  const rows = states
    .filter((state) => fetched.has(state.code))
    .map((state) => ({
      ...state,
      alive: fetchers.items.filter((f) => f.broker === state.code && f.alive).length,
      ...Object.fromEntries(WINDOWS.map(([key]) => [key, outcomes.get(state.code)?.[key]])),
    }));
  return sortableTable({
    caption: "Brokers this deployment syncs from",
    rows,
    empty: "No broker is installed.",
    columns: [
      { key: "name", label: "Broker", format: (r) => [r.name, " ", h("code", {}, r.code)] },
      { key: "state", label: "State", value: (r) => (r.paused ? "paused" : "running"), format: brokerState },
      {
        key: "alive",
        label: "Fetchers alive",
        numeric: true,
        format: (r) => h("span", { class: r.alive ? undefined : "bad" }, String(r.alive)),
      },
      ...WINDOWS.map(([key, label]) => ({
        key,
        label,
        numeric: true,
        value: (r) => r[key]?.failed ?? 0,
        format: (r) => counts(r[key]),
      })),
      { key: "action", label: "Action", value: (r) => r.code, format: pauseControl },
    ],
  });
}

function brokerState(broker) {
  if (!broker.paused) return h("span", { class: "good" }, "Running");
  return h(
    "span",
    { class: "warn" },
    h("strong", {}, "Paused"),
    ` since ${when(broker.paused.paused_at)}: `,
    broker.paused.reason,
  );
}

function pauseControl(broker) {
  if (broker.paused) {
    const resume = h("button", { type: "button", class: "secondary", "aria-label": `Resume ${broker.name}` }, "Resume");
    resume.addEventListener("click", () =>
      act(resume, async () => {
        await api(`/admin/brokers/${encodeURIComponent(broker.code)}/resume`, { method: "POST" });
        return `${broker.name} resumed: its accounts sync again.`;
      }),
    );
    return resume;
  }
  const id = `pause-reason-${broker.code}`;
  const reason = h("input", { id, name: "reason", required: true, maxlength: 500, placeholder: "Why (users see it)" });
  const pause = h("button", { type: "submit", class: "danger", "aria-label": `Pause ${broker.name}` }, "Pause");
  const form = h(
    "form",
    { class: "pause" },
    h("label", { for: id, class: "visually-hidden" }, `Reason for pausing ${broker.name}`),
    reason,
    pause,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(pause, async () => {
      await api(`/admin/brokers/${encodeURIComponent(broker.code)}/pause`, {
        method: "POST",
        json: { reason: reason.value.trim() },
      });
      return `${broker.name} paused: nothing is requested from it until it is resumed.`;
    });
  });
  return form;
}

let history = null; // the latest /admin/brokers/history, redrawn when the broker choice changes

// Draws the chart of the chosen broker's (or every broker's) runs per hour; returns the same numbers
// as a table, for those who cannot see the chart.
function drawOutcomes(latest, stats) {
  const failed = stats.brokers.reduce((n, broker) => n + broker.last_hour.failed, 0);
  tile("failed", failed, { bad: failed > 0 });
  history = latest;
  const choice = byId("outcomes-broker");
  const chosen = choice.value;
  fill(
    choice,
    h("option", { value: "" }, "All brokers"),
    history.brokers.map((b) => h("option", { value: b.broker, selected: b.broker === chosen }, b.broker)),
  );
  if (!choice.dataset.bound) {
    choice.dataset.bound = "yes";
    choice.addEventListener("change", () => fill(byId("outcomes"), hourlyChart()));
  }
  return hourlyChart();
}

function hourlyChart() {
  const chosen = byId("outcomes-broker").value;
  const shown = history.brokers.filter((b) => !chosen || b.broker === chosen);
  const sum = (outcome) => history.hours.map((_, i) => shown.reduce((n, b) => n + b[outcome][i], 0));
  const [succeeded, failed] = [sum("succeeded"), sum("failed")];
  const labels = history.hours.map((hour) => new Date(hour).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  chart(byId("outcomes-chart"), {
    type: "bar",
    data: {
      labels,
      datasets: [
        { label: "Succeeded", data: succeeded, backgroundColor: PALETTE[2], stack: "runs" },
        { label: "Failed", data: failed, backgroundColor: PALETTE[1], stack: "runs" },
      ],
    },
    options: {
      scales: {
        x: { title: { display: true, text: "Hour beginning" } },
        y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "Runs that ended" } },
      },
    },
  });
  const rows = labels.map((label, i) => ({ hour: label, succeeded: succeeded[i], failed: failed[i] })).reverse();
  return h(
    "details",
    {},
    h("summary", {}, "The numbers, newest hour first"),
    sortableTable({
      caption: chosen ? `Runs of ${chosen} per hour` : "Runs of every broker per hour",
      rows,
      columns: [
        { key: "hour", label: "Hour beginning" },
        { key: "succeeded", label: "Succeeded", numeric: true },
        { key: "failed", label: "Failed", numeric: true },
      ],
    }),
  );
}

function drawFetchers(fetchers) {
  const alive = fetchers.items.filter((f) => f.alive).length;
  const gone = fetchers.items.length - alive;
  tile("fetchers", alive, { bad: alive === 0, good: alive > 0 });
  return [
    h("p", { class: "summary" }, `${alive} alive`, gone ? h("span", { class: "bad" }, `, ${gone} gone`) : ""),
    sortableTable({
      caption: "Fetcher processes by their latest heartbeat",
      rows: fetchers.items,
      empty: "No fetcher has announced itself: start one with portfolio-sync fetcher --broker CODE.",
      columns: [
        { key: "broker", label: "Broker" },
        { key: "fetcher_id", label: "Fetcher", format: (f) => h("code", {}, f.fetcher_id) },
        { key: "host", label: "Host" },
        { key: "pid", label: "PID", numeric: true },
        {
          key: "alive",
          label: "State",
          value: (f) => (f.alive ? "alive" : "gone"),
          format: (f) => h("span", { class: f.alive ? "good" : "bad" }, f.alive ? "Alive" : "Gone"),
        },
        { key: "last_seen_at", label: "Last heartbeat", format: (f) => when(f.last_seen_at) },
        { key: "started_at", label: "Started", format: (f) => when(f.started_at) },
        { key: "in_flight", label: "Fetching now", numeric: true },
        { key: "handled", label: "Handled", numeric: true },
      ],
    }),
  ];
}

function drawFailures(page) {
  const byKind = new Map();
  for (const run of page.items) {
    const kind = run.failure_kind ?? "unknown";
    const group = byKind.get(kind) ?? { kind, runs: 0, brokers: new Set(), newest: run };
    group.runs += 1;
    group.brokers.add(run.broker);
    byKind.set(kind, group);
  }
  const rows = [...byKind.values()]
    .map((g) => ({ ...g, brokers: [...g.brokers].sort().join(", "), newest_at: g.newest.finished_at ?? g.newest.requested_at }))
    .sort((a, b) => b.runs - a.runs);
  return [
    h("p", { class: "hint" }, `Of the newest ${page.items.length} failed run${page.items.length === 1 ? "" : "s"}.`),
    sortableTable({
      caption: "Failed runs by kind",
      rows,
      empty: "No run has failed.",
      columns: [
        { key: "kind", label: "Kind", format: (g) => [h("code", {}, g.kind), h("br"), h("span", { class: "hint" }, FAILURE_KINDS[g.kind] ?? "")] },
        { key: "runs", label: "Runs", numeric: true },
        { key: "brokers", label: "Brokers" },
        { key: "newest_at", label: "Newest", format: (g) => when(g.newest_at) },
        { key: "reason", label: "Newest reason", value: (g) => g.newest.failure_reason, format: (g) => g.newest.failure_reason ?? "—" },
      ],
    }),
  ];
}

function drawStuckRuns(page) {
  tile("stuck", page.next_cursor ? `${page.items.length}+` : page.items.length, { bad: page.items.length > 0 });
  return sortableTable({
    caption: "Runs requested long ago that nothing answered, newest first",
    rows: page.items,
    empty: "No stuck run: every requested run was taken by a fetcher.",
    columns: [
      { key: "requested_at", label: "Requested", format: (r) => when(r.requested_at) },
      { key: "broker", label: "Broker" },
      { key: "account_id", label: "Account", format: (r) => h("code", {}, r.account_id) },
      { key: "trigger", label: "Trigger" },
      { key: "attempts", label: "Attempts", numeric: true },
      { key: "rerequested_at", label: "Requested again", format: (r) => when(r.rerequested_at) },
      { key: "action", label: "Action", value: (r) => r.id, format: rerequestButton },
    ],
  });
}

function rerequestButton(run) {
  const button = h("button", { type: "button", "aria-label": `Request run ${run.id} again` }, "Request again");
  button.addEventListener("click", () =>
    act(button, async () => {
      await api(`/admin/sync-runs/${encodeURIComponent(run.id)}/rerequest`, { method: "POST" });
      return `Run ${run.id} requested again.`;
    }),
  );
  return button;
}

function drawDeadLetters(report) {
  const held = report.items.filter((topic) => topic.count > 0);
  const empty = report.items.filter((topic) => topic.count === 0).map((topic) => topic.topic);
  const total = held.reduce((n, topic) => n + topic.count, 0);
  tile("dead-letters", total, { bad: total > 0 });
  return [
    h("p", { class: "summary" }, total ? `${total} dead letters` : "No dead letters."),
    held.map((topic) => [
      h("h3", {}, topic.topic, " ", h("span", { class: "hint" }, `(${topic.count})`)),
      replayButton(topic),
      sortableTable({
        caption: `Newest of ${topic.topic}`,
        rows: topic.newest,
        columns: [
          { key: "failed_at", label: "Failed", format: (d) => when(d.failed_at) },
          { key: "source_topic", label: "From topic" },
          { key: "key", label: "Key", format: (d) => (d.key ? h("code", {}, d.key) : "—") },
          { key: "reason", label: "Reason" },
          { key: "consumer_group", label: "Consumer group" },
          { key: "replayed", label: "Replayed", value: (d) => (d.replayed ? "yes" : "no"), format: (d) => (d.replayed ? "Yes" : "No") },
        ],
      }),
    ]),
    empty.length ? h("p", { class: "hint" }, `Empty: ${empty.join(", ")}.`) : null,
  ];
}

function replayButton(topic) {
  const button = h("button", { type: "button", class: "secondary", "aria-label": `Replay ${topic.topic}` }, "Replay");
  button.addEventListener("click", () =>
    act(button, async () => {
      const done = await api("/admin/dead-letters/replay", { method: "POST", json: { topic: topic.topic } });
      return `${topic.topic}: ${done.replayed} replayed, ${done.already_replayed} replayed before (not again).`;
    }),
  );
  return button;
}

function drawLag(report) {
  const rows = [...report.items].sort((a, b) => b.lag - a.lag);
  tile("lag", report.total);
  return [
    h("p", { class: "summary" }, `${report.total} records not yet processed`),
    sortableTable({
      caption: "Per consumer group and partition, most behind first",
      rows,
      empty: "No consumer group has committed yet.",
      columns: [
        { key: "group", label: "Group" },
        { key: "topic", label: "Topic" },
        { key: "partition", label: "Partition", numeric: true },
        { key: "committed", label: "Committed", numeric: true },
        { key: "end", label: "Log end", numeric: true },
        { key: "lag", label: "Lag", numeric: true },
      ],
    }),
  ];
}
