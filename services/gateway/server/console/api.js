// The gateway's HTTP API as the console uses it. Every request is timed in
// the browser and reported to the onRequest listeners with the gateway that
// served it (the Answerback-Gateway header); an error answer — RFC 9457
// application/problem+json, or anything else that is not 2xx — is thrown as
// a ProblemError.

/** A failed request: problem has at least title and status (0: no answer). */
export class ProblemError extends Error {
  constructor(problem, gateway = '') {
    super(problem.title);
    this.problem = problem;
    this.gateway = gateway;
  }
}

const listeners = new Set();

// The bearer token every /v1 request carries. make run prints the console's
// address with one in the fragment (#token=…), which never reaches a server;
// it is kept for this tab only and taken out of the address bar.
const TOKEN_KEY = 'answerback.token';
{
  const fromFragment = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromFragment) {
    sessionStorage.setItem(TOKEN_KEY, fromFragment);
    history.replaceState(null, '', location.pathname + location.search);
  }
}

/** token is the bearer token in use ('' when none). */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

/** setToken replaces the bearer token for this tab. */
export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** onRequest calls fn({method, path, status, gateway, ms}) after every request. */
export function onRequest(fn) {
  listeners.add(fn);
}

/**
 * request sends method path with body as JSON (when given) and returns
 * {status, gateway, data}; data is the parsed JSON body, or null.
 */
export async function request(method, path, body) {
  const init = { method, headers: { Accept: 'application/json, application/problem+json' } };
  if (token()) init.headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const started = performance.now();
  let res, text;
  try {
    res = await fetch(path, init);
    text = await res.text();
  } catch (err) {
    report({ method, path, status: 0, gateway: '', ms: performance.now() - started });
    throw new ProblemError({ title: 'The gateway did not answer', detail: err.message, status: 0 });
  }
  const ms = performance.now() - started;
  const gateway = res.headers.get('Answerback-Gateway') ?? '';
  report({ method, path, status: res.status, gateway, ms });

  const type = res.headers.get('Content-Type') ?? '';
  let data = null;
  if (text && type.includes('json')) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const problem = type.startsWith('application/problem+json') && data
      ? { ...data }
      : { title: `${res.status} ${res.statusText}`.trim(), detail: text.slice(0, 300) };
    problem.status ??= res.status;
    throw new ProblemError(problem, gateway);
  }
  return { status: res.status, gateway, data };
}

function report(entry) {
  for (const fn of listeners) fn(entry);
}

/** orderPath is /v1/orders/{id}{rest}, the ID escaped. */
export function orderPath(id, rest = '') {
  return `/v1/orders/${encodeURIComponent(id)}${rest}`;
}
