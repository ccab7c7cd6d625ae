// The sign-in page: sign in with an API token, or sign up for one.

import { api, forgetToken, rememberToken } from "./api.js";
import { byId, say, sayError } from "./dom.js";

// Only a page of this dashboard may follow sign-in (never another site): a page name, and a query
// of plain ids.
function next() {
  const page = new URLSearchParams(location.search).get("next") || "";
  const safe = /^[a-z-]+\.html(\?[A-Za-z0-9=&_.%-]*)?$/.test(page) && !page.startsWith("index.html");
  return safe ? page : "holdings.html";
}

byId("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  const field = byId("token");
  rememberToken(field.value.trim());
  try {
    await api("/me");
    location.assign(next());
  } catch (error) {
    forgetToken();
    if (error.status === 401) say("That token is not valid: check it, or ask an operator for a new one.", "error");
    else sayError(error);
    field.focus();
  }
});

byId("sign-up").addEventListener("submit", async (event) => {
  event.preventDefault();
  const invite = byId("invite").value.trim();
  try {
    const created = await api("/users", {
      method: "POST",
      json: { email: byId("email").value.trim(), ...(invite ? { invite_code: invite } : {}) },
    });
    rememberToken(created.api_token);
    byId("issued-token").value = created.api_token;
    byId("new-token").hidden = false;
    byId("sign-up").hidden = true;
    say("Signed up. Save your token, then continue.", "success");
    byId("issued-token").select();
  } catch (error) {
    sayError(error);
  }
});

byId("continue").addEventListener("click", () => location.assign(next()));
