// The credential inputs a broker declares (GET /v1/brokers), write-only: password inputs that are
// never filled from the API (no route returns credentials) and are cleared once sent.

import { h } from "./dom.js";

let made = 0;

// Labelled password inputs for `broker`'s required and optional fields, in `container`.
export function drawCredentialFields(container, broker) {
  container.replaceChildren();
  const fields = [
    ...broker.credential_fields.map((name) => ({ name, required: true })),
    ...broker.optional_credential_fields.map((name) => ({ name, required: false })),
  ];
  if (!fields.length) {
    container.append(h("p", { class: "hint" }, "This broker needs no credentials."));
    return;
  }
  for (const field of fields) {
    const id = `credential-${++made}`;
    container.append(
      h("label", { for: id }, field.name, field.required ? "" : h("span", { class: "hint" }, " (optional)")),
      h("input", {
        id,
        type: "password",
        autocomplete: "off",
        "data-credential": field.name,
        required: field.required,
      }),
    );
  }
  if (broker.code === "sim") {
    container.append(h("p", { class: "hint" }, "market: in (NSE, INR) or us (US exchanges, USD); empty: both."));
  }
}

// The non-blank values typed into `container`'s credential inputs, by field name.
export function credentialValues(container) {
  const values = {};
  for (const input of container.querySelectorAll("input[data-credential]")) {
    if (input.value.trim()) values[input.dataset.credential] = input.value.trim();
  }
  return values;
}

export function clearCredentialFields(container) {
  for (const input of container.querySelectorAll("input[data-credential]")) input.value = "";
}
