// What every signed-in page shares: the check that someone is signed in, and the header.

import { api, ApiError, forgetToken, token } from "./api.js";
import { byId, fill, h, sayError } from "./dom.js";

const PAGES = [
  ["holdings.html", "Holdings"],
  ["accounts.html", "Accounts"],
  ["transactions.html", "Transactions"],
  ["statements.html", "Statements"],
];
const OPERATOR_PAGES = [["operator.html", "Operations"]];

// The signed-in user (GET /v1/me), with the header drawn; or off to the sign-in page.
export async function signedIn() {
  if (!token()) return toSignIn();
  let me;
  try {
    me = await api("/me");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      forgetToken();
      return toSignIn();
    }
    sayError(error);
    throw error;
  }
  drawHeader(me);
  return me;
}

function toSignIn() {
  // Back to this page after signing in, with its query (say, the account a review is of).
  const page = location.pathname.split("/").pop() + location.search;
  location.replace(`index.html?next=${encodeURIComponent(page)}`);
  return new Promise(() => {}); // the page is going away: nothing after this runs
}

function drawHeader(me) {
  const here = location.pathname.split("/").pop();
  const pages = me.role === "operator" ? [...PAGES, ...OPERATOR_PAGES] : PAGES;
  fill(
    byId("site-header"),
    h("a", { class: "brand", href: "holdings.html" }, "portfolio-sync"),
    h(
      "nav",
      { "aria-label": "Pages" },
      h(
        "ul",
        {},
        pages.map(([href, label]) =>
          h("li", {}, h("a", { href, "aria-current": href === here ? "page" : undefined }, label)),
        ),
      ),
    ),
    h(
      "div",
      { class: "who" },
      h("span", {}, me.email),
      h("button", { type: "button", onclick: signOut }, "Sign out"),
    ),
  );
}

function signOut() {
  forgetToken();
  location.replace("index.html");
}

// Run a page's main function; report what stops it on the status line.
export function start(main) {
  main().catch((error) => {
    if (!(error instanceof ApiError)) console.error(error);
    sayError(error);
  });
}
