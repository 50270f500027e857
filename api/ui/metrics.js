// Request graphs: the node's own Prometheus counters (`skiff_pod_requests_total`, the
// `skiff_pod_request_duration_seconds` histogram), read through the API server's
// `nodes/NAME/proxy/metrics` as the user (RBAC: `get` on `nodes/proxy`), sampled every few
// seconds. Rates and latency percentiles are computed here from the counters' and buckets'
// increase over a sliding window, as Prometheus' `rate()` and `histogram_quantile()` do.
import { useEffect, useRef, useState } from 'preact/hooks';
import { requestText } from './api.js';

export const SAMPLE_MS = 5000;
/** The sliding window each point is computed over. */
export const WINDOW_MS = 60000;
const KEEP = 60; // 5 minutes of samples

const special = { '+Inf': Infinity, '-Inf': -Infinity, NaN: NaN };
const number = (s) => (s in special ? special[s] : Number(s));

/** The labels of `{a="x",b="y\"z"}` (the text between the braces) as an object. */
function labelsOf(text) {
  const out = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf('=', i);
    if (eq < 0 || text[eq + 1] !== '"') break;
    const key = text.slice(i, eq).trim();
    let value = '';
    let j = eq + 2;
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === '\\' && j + 1 < text.length) {
        j++;
        value += text[j] === 'n' ? '\n' : text[j];
      } else value += text[j];
    }
    out[key] = value;
    i = j + 1;
    while (i < text.length && (text[i] === ',' || text[i] === ' ')) i++;
  }
  return out;
}

/**
 * Samples of Prometheus or OpenMetrics text: [{ name, labels, value }], comments skipped.
 * KEEP(line), when given, is asked first and cheaply skips lines of no interest.
 */
export function parseMetrics(text, keep) {
  const out = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line[0] === '#' || (keep && !keep(line))) continue;
    let name; let labels = {}; let rest;
    const brace = line.indexOf('{');
    const space = line.indexOf(' ');
    if (brace >= 0 && (space < 0 || brace < space)) {
      // The closing brace is the last one outside a quoted value.
      let j = brace + 1; let quoted = false;
      for (; j < line.length; j++) {
        if (line[j] === '\\') { j++; continue; }
        if (line[j] === '"') quoted = !quoted;
        else if (line[j] === '}' && !quoted) break;
      }
      name = line.slice(0, brace);
      labels = labelsOf(line.slice(brace + 1, j));
      rest = line.slice(j + 1).trim();
    } else {
      if (space < 0) continue;
      name = line.slice(0, space);
      rest = line.slice(space + 1).trim();
    }
    const value = number(rest.split(/\s+/)[0]);
    if (Number.isNaN(value) && rest.split(/\s+/)[0] !== 'NaN') continue;
    out.push({ name, labels, value });
  }
  return out;
}

/**
 * The request counters of namespace NS's pods in parsed samples: Map(pod -> { requests, errors
 * (5xx), buckets: [[le, cumulative count]] sorted by le }).
 */
export function podCounters(samples, ns) {
  const pods = new Map();
  const of = (name) => {
    let p = pods.get(name);
    if (!p) { p = { requests: 0, errors: 0, buckets: [] }; pods.set(name, p); }
    return p;
  };
  for (const s of samples) {
    if (s.labels.namespace !== ns || !s.labels.pod) continue;
    if (s.name === 'skiff_pod_requests_total') {
      const p = of(s.labels.pod);
      p.requests += s.value;
      if (s.labels.code === '5xx') p.errors += s.value;
    } else if (s.name === 'skiff_pod_request_duration_seconds_bucket') {
      of(s.labels.pod).buckets.push([number(s.labels.le), s.value]);
    }
  }
  for (const p of pods.values()) p.buckets.sort((a, b) => a[0] - b[0]);
  return pods;
}

/**
 * The Q-quantile (0..1) of a cumulative histogram [[le, count]], interpolated linearly inside
 * the bucket as `histogram_quantile` does; null without observations. A rank in the +Inf bucket
 * answers the largest finite bound.
 */
export function quantile(q, buckets) {
  if (buckets.length === 0) return null;
  const total = buckets[buckets.length - 1][1];
  if (!(total > 0)) return null;
  const rank = q * total;
  let lower = 0; let below = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Infinity) return lower;
      if (count === below) return le;
      return lower + (le - lower) * ((rank - below) / (count - below));
    }
    lower = le; below = count;
  }
  return lower;
}

/** A counter's increase from A to B; a drop means the counter restarted (a new pod), so B. */
const increase = (a, b) => (b >= a ? b - a : b);

/**
 * The points of pods NAMES over HISTORY ([{ t, pods: Map }], oldest first): for each sample
 * with an older one within WINDOW, { t, rps, errors (per second), p50, p99 (seconds or null),
 * count (requests in the window), span (ms) }. A pod missing from the older sample started in
 * between, from zero.
 */
export function requestSeries(history, names, windowMs = WINDOW_MS) {
  const out = [];
  let j = 0;
  for (let i = 1; i < history.length; i++) {
    const now = history[i];
    while (j < i - 1 && history[j].t < now.t - windowMs) j++;
    const then = history[j];
    const span = now.t - then.t;
    if (span <= 0) continue;
    let count = 0; let errors = 0;
    const merged = new Map();
    for (const name of names) {
      const b = now.pods.get(name);
      if (!b) continue;
      const a = then.pods.get(name) || { requests: 0, errors: 0, buckets: [] };
      const restarted = b.requests < a.requests;
      count += restarted ? b.requests : b.requests - a.requests;
      errors += restarted ? b.errors : b.errors - a.errors;
      const before = new Map(restarted ? [] : a.buckets);
      for (const [le, c] of b.buckets) merged.set(le, (merged.get(le) || 0) + increase(before.get(le) || 0, c));
    }
    const buckets = [...merged.entries()].sort((x, y) => x[0] - y[0]);
    out.push({
      t: now.t,
      rps: count / (span / 1000),
      errors: errors / (span / 1000),
      p50: quantile(0.5, buckets),
      p99: quantile(0.99, buckets),
      count,
      span,
    });
  }
  return out;
}

/**
 * Samples the request counters of namespace NS from nodes NODES (names) every SAMPLE_MS;
 * returns { history, error }. A refusal (403, the user may not `get nodes/proxy`) stops
 * sampling and is reported; other failures are reported and retried.
 */
export function useRequestMetrics(ns, nodes) {
  const [state, setState] = useState({ history: [], error: null });
  const history = useRef([]);
  const key = [...new Set(nodes.filter(Boolean))].sort().join(',');
  useEffect(() => {
    if (!key) return undefined;
    let stopped = false; let timer;
    const keep = (line) => line.startsWith('skiff_pod_request') && line.includes(`namespace="${ns}"`);
    const sample = async () => {
      try {
        const texts = await Promise.all(key.split(',').map((n) =>
          requestText(`/api/v1/nodes/${encodeURIComponent(n)}/proxy/metrics`)));
        const pods = new Map();
        for (const text of texts) for (const [k, v] of podCounters(parseMetrics(text, keep), ns)) pods.set(k, v);
        const h = history.current;
        h.push({ t: Date.now(), pods });
        if (h.length > KEEP) h.shift();
        if (!stopped) setState({ history: [...h], error: null });
      } catch (err) {
        if (!stopped) setState({ history: [...history.current], error: err });
        if (err.status === 403 || err.status === 401) return;
      }
      if (!stopped) timer = setTimeout(sample, SAMPLE_MS);
    };
    sample();
    return () => { stopped = true; clearTimeout(timer); };
  }, [ns, key]);
  return state;
}

export const fmtRate = (r) => (r >= 100 ? `${Math.round(r)} req/s` : r >= 10 ? `${r.toFixed(1)} req/s` : `${r.toFixed(2)} req/s`);
export function fmtSeconds(s) {
  if (s === null || s === undefined) return '–';
  if (s >= 1) return `${s.toFixed(2)} s`;
  if (s >= 0.01) return `${Math.round(s * 1000)} ms`;
  return `${(s * 1000).toFixed(1)} ms`;
}
