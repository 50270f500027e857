// The console's only way to the cluster: ordinary Kubernetes API calls made as the user.
//
// The bearer token lives in sessionStorage (gone when the tab closes); without one the browser
// may still present the kubeconfig's client certificate, which the server accepts the same way.
// Lists stay current through watches (`?watch=1`, resumed from the last resourceVersion, relisted
// on 410 Gone), never by polling.

const TOKEN_KEY = 'skiff.console.token';

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  setToken: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** An API answer that is not 2xx: the HTTP status and the Kubernetes Status message. */
export class ApiError extends Error {
  constructor(status, message, reason) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
  get forbidden() { return this.status === 403; }
  get unauthorized() { return this.status === 401; }
}

function headers(extra) {
  const h = { Accept: 'application/json', ...extra };
  const t = session.token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

async function errorOf(res) {
  let message = `${res.status} ${res.statusText}`;
  let reason;
  try {
    const status = await res.json();
    if (status && status.message) message = status.message;
    reason = status && status.reason;
  } catch (_) { /* not a Status */ }
  return new ApiError(res.status, message, reason);
}

/** One request; JSON in and out. Throws ApiError on a non-2xx answer. */
export async function request(path, { method = 'GET', body, contentType, signal } = {}) {
  const extra = body === undefined ? {} : { 'Content-Type': contentType || 'application/json' };
  const res = await fetch(path, {
    method,
    headers: headers(extra),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    credentials: 'same-origin',
    cache: 'no-store',
  });
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return null;
  return res.json();
}

/** A GET answering text (e.g. a node's metrics through `nodes/NAME/proxy/metrics`). Throws ApiError. */
export async function requestText(path, { signal } = {}) {
  const res = await fetch(path, { headers: headers({ Accept: 'text/plain, */*' }), signal, credentials: 'same-origin', cache: 'no-store' });
  if (!res.ok) throw await errorOf(res);
  return res.text();
}

export const patch = (path, body, type = 'application/merge-patch+json') =>
  request(path, { method: 'PATCH', body, contentType: type });

/** Who the API says the user is (SelfSubjectReview), or throws (401 without credentials). */
export async function whoami() {
  const review = await request('/apis/authentication.k8s.io/v1/selfsubjectreviews', {
    method: 'POST',
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
  });
  return (review.status && review.status.userInfo) || {};
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal && signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

const keyOf = (o) => `${o.metadata.namespace || ''}/${o.metadata.name}`;

/** The first page of a list: drawn while the rest is read (one consistent snapshot). */
export const FIRST_PAGE = 250;
const NEXT_PAGES = 2000;

/**
 * Lists PATH then watches it, calling onChange(items, error, remaining) with the whole current
 * list after each batch of events. The list is read in pages: after the first, onChange gets
 * those items and how many more the server says remain (`remainingItemCount`, else null); after
 * the last, the whole list (remaining 0). The pages and the watch share the first page's
 * resourceVersion. Ends when signal aborts, or on 401/403 (reported through onChange).
 */
export async function watchList(path, onChange, signal) {
  let items = new Map();
  let rv = '';
  const sep = path.includes('?') ? '&' : '?';
  const emit = () => onChange([...items.values()], null, 0);
  const relist = async () => {
    const first = await request(`${path}${sep}limit=${FIRST_PAGE}`, { signal });
    items = new Map((first.items || []).map((o) => [keyOf(o), o]));
    rv = first.metadata.resourceVersion;
    let token = first.metadata.continue;
    if (token) onChange([...items.values()], null, first.metadata.remainingItemCount ?? null);
    while (token) {
      const page = await request(`${path}${sep}limit=${NEXT_PAGES}&continue=${encodeURIComponent(token)}`, { signal });
      for (const o of page.items || []) items.set(keyOf(o), o);
      token = page.metadata.continue;
    }
    emit();
  };
  let needList = true;
  while (!signal.aborted) {
    try {
      if (needList) { await relist(); needList = false; }
      const url = `${path}${sep}watch=1&allowWatchBookmarks=true&resourceVersion=${encodeURIComponent(rv)}`;
      const res = await fetch(url, { headers: headers(), signal, credentials: 'same-origin', cache: 'no-store' });
      if (res.status === 410) { needList = true; continue; }
      if (!res.ok) throw await errorOf(res);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let changed = false;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          const ev = JSON.parse(line);
          const obj = ev.object || {};
          if (ev.type === 'ERROR') {
            if (obj.code === 410) needList = true;
            else throw new ApiError(obj.code || 500, obj.message || 'watch error', obj.reason);
            break;
          }
          if (obj.metadata && obj.metadata.resourceVersion) rv = obj.metadata.resourceVersion;
          if (ev.type === 'BOOKMARK') continue;
          if (ev.type === 'DELETED') items.delete(keyOf(obj));
          else items.set(keyOf(obj), obj);
          changed = true;
        }
        if (changed) emit();
        if (needList) { reader.cancel().catch(() => {}); break; }
      }
    } catch (err) {
      if (signal.aborted) return;
      // A continue token past the server's compaction: list again from the start.
      if (err instanceof ApiError && err.status === 410) { needList = true; continue; }
      onChange(null, err);
      if (err instanceof ApiError && (err.forbidden || err.unauthorized || err.status === 404)) return;
      await sleep(2000, signal);
    }
  }
}

/**
 * Streams a pod's log (`/log?follow=true`), calling onText(chunk) as lines arrive; resolves when
 * the stream ends. Throws ApiError on refusal.
 */
export async function followLog(ns, pod, container, onText, signal) {
  const q = new URLSearchParams({ follow: 'true', tailLines: '500' });
  if (container) q.set('container', container);
  const res = await fetch(`/api/v1/namespaces/${ns}/pods/${pod}/log?${q}`, {
    headers: headers({ Accept: '*/*' }), signal, credentials: 'same-origin', cache: 'no-store',
  });
  if (!res.ok) throw await errorOf(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onText(value);
  }
}

/** A GET through the API server's proxy (pods/proxy, services/proxy): status and body text. */
export async function proxyGet(path) {
  const res = await fetch(path, { headers: headers({ Accept: '*/*' }), credentials: 'same-origin', cache: 'no-store' });
  const text = await res.text();
  return { status: res.status, statusText: res.statusText, text };
}

/** `<n>m` / `<n>` / `<n>Ki` … into cores or bytes. */
export function quantity(q) {
  if (q === undefined || q === null) return 0;
  const s = String(q);
  const m = /^([0-9.eE+-]+)([a-zA-Z]*)$/.exec(s);
  if (!m) return 0;
  const n = parseFloat(m[1]);
  const mult = {
    '': 1, n: 1e-9, u: 1e-6, m: 1e-3, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12,
    Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4,
  }[m[2]];
  return mult === undefined ? 0 : n * mult;
}
