// The Answerback console: browse the catalog, create or open an order, send
// its commands, and follow it live. The order shown is the newest version
// seen, whether it came in a command's reply or on the live stream.

import { ProblemError, onRequest, orderPath, request, setToken, token } from './api.js';
import { watch } from './live.js';

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

/** el builds an element; text is set as text, never parsed as HTML. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== false && v != null) node.setAttribute(k, v === true ? '' : v);
  }
  node.append(...children);
  return node;
}

const LOG_LIMIT = 50;

const state = {
  orderId: '',
  version: -1, // of the view shown
  currency: 'EUR',
  unwatch: null,
};

// --- money ---------------------------------------------------------------

const formats = new Map();

/** money formats minor units (cents) in currency. */
function money(minor, currency = state.currency) {
  let f = formats.get(currency);
  if (!f) {
    try {
      f = new Intl.NumberFormat(undefined, { style: 'currency', currency });
    } catch {
      f = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2 });
    }
    formats.set(currency, f);
  }
  return f.format(minor / 10 ** f.resolvedOptions().maximumFractionDigits);
}

const counts = new Intl.NumberFormat();
const count = (n) => counts.format(n);

// --- messages ------------------------------------------------------------

/** showProblem shows err: a problem's title, detail and type, or err's message. */
function showProblem(err) {
  const box = $('problem');
  box.replaceChildren();
  box.className = 'problem';
  if (err instanceof ProblemError) {
    const p = err.problem;
    box.append(el('strong', { 'data-testid': 'problem-title', text: p.title || 'Request failed' }));
    if (p.detail) box.append(el('p', { 'data-testid': 'problem-detail', text: p.detail }));
    const meta = [p.status ? `HTTP ${p.status}` : '', p.type ?? '', err.gateway ? `from ${err.gateway}` : '']
      .filter(Boolean).join(' · ');
    if (meta) box.append(el('small', { 'data-testid': 'problem-meta', text: meta }));
  } else {
    box.append(el('strong', { 'data-testid': 'problem-title', text: 'Something went wrong in the console' }),
      el('p', { 'data-testid': 'problem-detail', text: String(err?.message ?? err) }));
  }
  box.hidden = false;
}

function showNotice(text) {
  const box = $('problem');
  box.replaceChildren(el('span', { text }));
  box.className = 'notice';
  box.hidden = false;
}

function clearMessage() {
  $('problem').hidden = true;
}

/** act runs an action: its message replaces the last one, its error is shown. */
async function act(fn) {
  clearMessage();
  try {
    await fn();
  } catch (err) {
    showProblem(err);
  }
}

// --- request and event logs ----------------------------------------------

function prepend(list, item) {
  list.prepend(item);
  while (list.children.length > LOG_LIMIT) list.lastElementChild.remove();
}

const clock = () => new Date().toLocaleTimeString(undefined, { hour12: false });

onRequest(({ method, path, status, gateway, ms }) => {
  const cls = status >= 500 || status === 0 ? 'bad' : status >= 400 ? 'warn' : 'ok';
  prepend($('request-log'), el('li', { 'data-testid': 'log-entry', 'data-gateway': gateway, 'data-status': status },
    el('time', { text: clock() }), ' ',
    el('code', { text: `${method} ${path}` }), ' ',
    el('span', { class: `status ${cls}`, 'data-testid': 'log-status', text: status || 'no answer' }), ' ',
    el('span', { class: 'gateway', 'data-testid': 'log-gateway', title: 'Answerback-Gateway', text: gateway || '—' }), ' ',
    el('span', { class: 'latency', 'data-testid': 'log-latency', text: `${ms.toFixed(1)} ms` })));
});

function logEvent(name, data) {
  let what = '';
  if (data.data && typeof data.data === 'object') {
    const d = data.data;
    what = d.sku ? `${d.sku}${d.quantity ? ` × ${d.quantity}` : ''}` : d.customerId ?? '';
  }
  prepend($('event-log'), el('li', { 'data-testid': 'event-entry', 'data-event': name, 'data-version': data.version },
    el('time', { text: clock() }), ' ',
    el('code', { text: `v${data.version} ${name}` }), what ? ` ${what}` : ''));
}

// --- the order -----------------------------------------------------------

/**
 * render shows view (an order view: {orderId, version, order, validItems,
 * moreValidItems}) unless a newer version is shown already.
 */
function render(view, source) {
  if (!view || view.orderId !== state.orderId || view.version < state.version) return;
  state.version = view.version;
  const order = view.order ?? {};
  state.currency = order.currency || state.currency;
  const open = order.status === 'open';

  $('order').hidden = false;
  $('order-title').textContent = `${view.orderId} · ${order.customerId ?? ''}`;
  $('order-status').textContent = order.status ?? '';
  $('order-status').dataset.status = order.status ?? '';
  $('order-version').textContent = String(view.version);
  $('order-total').textContent = money(order.total ?? 0);

  $('order-lines').replaceChildren(...(order.lines ?? []).map((line) => el('tr', { 'data-testid': `line-${line.sku}` },
    el('td', {}, el('code', { text: line.sku })),
    el('td', { text: line.name || '(not in the catalog)' }),
    el('td', { class: 'num', 'data-testid': `line-quantity-${line.sku}`, text: String(line.quantity) }),
    el('td', { class: 'num', text: money(line.unitPrice) }),
    el('td', { class: 'num', text: money(line.lineTotal) }),
    el('td', {}, el('button', {
      type: 'button', class: 'link', 'data-testid': `remove-${line.sku}`, disabled: !open,
      'aria-label': `Remove ${line.name || line.sku}`, text: 'remove',
      onclick: () => act(() => command('DELETE', orderPath(state.orderId, `/items/${encodeURIComponent(line.sku)}`))),
    })))));
  if (!order.lines?.length) {
    $('order-lines').append(el('tr', {}, el('td', { colspan: 6, class: 'empty', text: 'No lines yet.' })));
  }

  for (const b of document.querySelectorAll('[data-action]')) b.disabled = !open;
  $('valid-items-source').textContent = `${source === 'live' ? 'live view' : 'last reply'} (version ${view.version})`;
  const items = view.validItems ?? [];
  $('valid-items').replaceChildren(...items.map((item) => el('li', {}, el('button', {
    type: 'button', 'data-testid': `valid-item-${item.sku}`, disabled: !open,
    onclick: () => act(() => addItem(item.sku)),
  }, el('span', { class: 'name', text: item.name }), ' ',
  el('small', { text: `${item.sku} · ${money(item.unitPrice, item.currency)} · up to ${count(item.maxQuantity)}` })))));
  if (!items.length) $('valid-items').append(el('li', { class: 'empty', text: open ? 'No item is valid for this order now.' : `The order is ${order.status}.` }));
  if (view.moreValidItems) $('valid-items').append(el('li', { class: 'empty', text: 'More items are valid than the view lists.' }));
}

/** follow makes id the order shown and opens its live view. */
function follow(id) {
  state.unwatch?.();
  state.orderId = id;
  state.version = -1;
  $('event-log').replaceChildren();
  const url = new URL(location.href);
  url.searchParams.set('order', id);
  history.replaceState(null, '', url);
  state.unwatch = watch(id, {
    onEvent: (name, data) => {
      logEvent(name, data);
      if (data.order) render(data.order, 'live');
    },
    onState: (s) => {
      $('stream-status').textContent = s;
      $('stream-status').dataset.state = s;
    },
  });
}

/** command sends an order command and shows its reply (or that it is pending). */
async function command(method, path, body) {
  const res = await request(method, path, body);
  if (res.status === 202) {
    showNotice('Accepted: the command is still in the pipeline; the live view will show its outcome.');
    return res;
  }
  render(res.data, 'reply');
  return res;
}

function addItem(sku) {
  const raw = $('quantity').value.trim();
  const n = Number(raw);
  // The gateway is the judge of the quantity: send what was typed.
  const quantity = raw !== '' && Number.isFinite(n) ? n : raw;
  return command('POST', orderPath(state.orderId, '/items'), { sku, quantity });
}

// --- the catalog ---------------------------------------------------------

async function loadCatalog() {
  const { data } = await request('GET', '/v1/catalog');
  const items = data?.items ?? [];
  $('catalog').replaceChildren(...items.map((item) => el('tr', { 'data-testid': `catalog-${item.sku}`, class: item.active ? '' : 'inactive' },
    el('td', {}, el('code', { text: item.sku })),
    el('td', { text: item.name }),
    el('td', { class: 'num', text: money(item.unitPrice, item.currency) }),
    el('td', { class: 'num', text: count(item.stock) }),
    el('td', { class: 'num', text: count(item.maxPerOrder) }),
    el('td', { text: item.active ? 'yes' : 'no' }))));
  if (!items.length) $('catalog').append(el('tr', {}, el('td', { colspan: 6, class: 'empty', text: 'The catalog is empty.' })));
}

// --- wiring --------------------------------------------------------------

$('order-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  const id = form.elements.id.value.trim();
  const action = e.submitter?.value ?? 'open';
  act(async () => {
    if (action === 'create') {
      const body = { customerId: form.elements.customer.value.trim() };
      if (id) body.id = id; // none: the gateway names the order
      const res = await request('POST', '/v1/orders', body);
      const created = res.data?.orderId ?? id;
      if (created) {
        form.elements.id.value = created;
        follow(created);
      }
      if (res.status === 202) showNotice(`Accepted: command ${res.data?.commandId ?? ''} is still in the pipeline; the live view will show the order.`);
      else render(res.data, 'reply');
      return;
    }
    if (!id) throw new ProblemError({ title: 'Enter the ID of the order to open' });
    const res = await request('GET', orderPath(id));
    follow(id);
    render(res.data, 'reply');
  });
});

for (const b of document.querySelectorAll('[data-action]')) {
  b.addEventListener('click', () => act(() => command('POST', orderPath(state.orderId, `/${b.dataset.action}`))));
}

$('catalog-refresh').addEventListener('click', () => act(loadCatalog));
$('token').value = token();
$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  setToken($('token').value.trim());
  act(loadCatalog);
});

act(async () => {
  await loadCatalog();
  const id = new URL(location.href).searchParams.get('order');
  if (id) {
    const form = $('order-form');
    form.elements.id.value = id;
    form.requestSubmit($('open-order'));
  }
});
