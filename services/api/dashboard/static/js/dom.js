// Building the page. Everything that came from the API or the user goes in as text: `h` appends
// strings as text nodes and sets attributes with setAttribute, never parses markup, so a symbol or a
// label holding "<script>" shows as those characters.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.className = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

// Replace what `element` holds.
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element;
}

// The page's status line (an aria-live region): what just happened, or what went wrong.
export function say(message, kind = "info") {
  const status = byId("status");
  status.className = `status status-${kind}`;
  status.textContent = message;
}

export function sayError(error) {
  say(error instanceof Error ? error.message : String(error), "error");
}

// Decimal amounts arrive as strings; they are shown rounded, and summed as numbers for totals only.
export function money(amount, currency) {
  const value = Number(amount);
  if (!Number.isFinite(value)) return "—";
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(value);
  } catch {
    return `${value.toFixed(2)} ${currency}`; // a code Intl does not know
  }
}

export function quantity(amount) {
  const value = Number(amount);
  return Number.isFinite(value) ? new Intl.NumberFormat(undefined, { maximumFractionDigits: 6 }).format(value) : "—";
}

export function when(iso) {
  if (!iso) return "—";
  const moment = new Date(iso);
  return Number.isNaN(moment.getTime()) ? String(iso) : moment.toLocaleString();
}

// A table whose columns sort (click or Enter on a header) and whose rows a text box filters.
// columns: [{key, label, numeric?, format?(row) -> text or Node, value?(row) -> sort key}]
// footer?(shown rows) -> <tr> nodes for a tfoot (totals of what the filter lets through).
// rowClass?(row) -> a class for the row's <tr> (say, to highlight it).
export function sortableTable({ caption, columns, rows, filter, footer, rowClass, empty = "Nothing to show." }) {
  let order = { key: null, ascending: true };
  const body = h("tbody");
  const foot = footer ? h("tfoot") : null;
  const headers = columns.map((column) =>
    h(
      "th",
      { scope: "col", class: column.numeric ? "numeric" : undefined, "aria-sort": "none" },
      h("button", { type: "button", class: "sort", onclick: () => sortBy(column) }, column.label),
    ),
  );
  const table = h(
    "table",
    { class: "data" },
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, headers)),
    body,
    foot,
  );

  function valueOf(column, row) {
    const value = column.value ? column.value(row) : row[column.key];
    return column.numeric ? Number(value) : String(value ?? "").toLowerCase();
  }

  function sortBy(column) {
    order = { key: column.key, ascending: order.key === column.key ? !order.ascending : true };
    columns.forEach((c, i) =>
      headers[i].setAttribute("aria-sort", c.key !== order.key ? "none" : order.ascending ? "ascending" : "descending"),
    );
    render();
  }

  function render() {
    const needle = filter ? filter.value.trim().toLowerCase() : "";
    let shown = rows.filter(
      (row) => !needle || columns.some((column) => String(row[column.key] ?? "").toLowerCase().includes(needle)),
    );
    if (order.key) {
      const column = columns.find((c) => c.key === order.key);
      shown = [...shown].sort((a, b) => {
        const [x, y] = [valueOf(column, a), valueOf(column, b)];
        return (x < y ? -1 : x > y ? 1 : 0) * (order.ascending ? 1 : -1);
      });
    }
    fill(
      body,
      shown.length
        ? shown.map((row) =>
            h(
              "tr",
              { class: rowClass ? rowClass(row) : undefined },
              columns.map((column) =>
                h("td", { class: column.numeric ? "numeric" : undefined }, column.format ? column.format(row) : row[column.key]),
              ),
            ),
          )
        : h("tr", {}, h("td", { colspan: columns.length }, empty)),
    );
    if (foot) fill(foot, footer(shown));
  }

  if (filter) filter.addEventListener("input", render);
  render();
  return h("div", { class: "table-scroll" }, table);
}
