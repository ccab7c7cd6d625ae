// The JSON API, as the dashboard's pages call it: same origin, the token as a bearer header.
//
// The token lives in this tab's sessionStorage (gone when the tab closes), never in a URL or a
// cookie. Every failure becomes an ApiError whose message a person can read.

const TOKEN_KEY = "portfolio-sync.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function rememberToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.name = "ApiError";
    this.status = status; // 0: the API could not be reached
    this.body = body;
  }
}

// Call `/v1${path}`. `json` is sent as a JSON body; `body` as is (a FormData, a File).
// Returns the decoded JSON answer (null for 204), or throws an ApiError.
export async function api(path, { method = "GET", json, body, headers = {} } = {}) {
  const sent = new Headers(headers);
  const current = token();
  if (current) sent.set("Authorization", `Bearer ${current}`);
  let payload = body;
  if (json !== undefined) {
    sent.set("Content-Type", "application/json");
    payload = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(`/v1${path}`, {
      method,
      headers: sent,
      body: payload,
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "The API could not be reached: check the connection and try again.");
  }
  if (response.status === 204) return null;
  const isJson = (response.headers.get("content-type") || "").includes("json");
  const answer = isJson ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, describe(response, answer), answer);
  return answer;
}

// Every page of a paged list (`items` + `next_cursor`), up to `limit` items.
export async function allPages(path, { limit = 2000 } = {}) {
  const items = [];
  let cursor = null;
  do {
    const separator = path.includes("?") ? "&" : "?";
    const page = await api(cursor ? `${path}${separator}cursor=${encodeURIComponent(cursor)}` : path);
    items.push(...page.items);
    cursor = page.next_cursor ?? null;
  } while (cursor && items.length < limit);
  return items;
}

function describe(response, answer) {
  const detail = answer && typeof answer === "object" ? answer.detail : answer;
  if (Array.isArray(detail)) {
    // FastAPI's 422: [{loc: [...], msg}] -> "email: value is not a valid email address"
    return detail
      .map((problem) => {
        const where = (problem.loc || []).filter((part) => part !== "body" && part !== "query");
        return where.length ? `${where.join(".")}: ${problem.msg}` : problem.msg;
      })
      .join("; ");
  }
  if (typeof detail === "string" && detail) {
    if (response.status === 503) return `${detail} (the page will work again once it is back)`;
    return detail;
  }
  return `The API answered ${response.status} ${response.statusText}.`;
}
