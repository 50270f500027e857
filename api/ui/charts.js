// Usage graphs: the page samples metrics.k8s.io every few seconds (the metrics API's own data,
// no object polling) and draws the last minutes as small inline SVG line charts; request graphs
// (requests/s, latency) from the nodes' counters (`metrics.js`).
import { html } from './html.js';
import { useEffect, useState } from 'preact/hooks';
import { request, quantity } from './api.js';
import { requestSeries, fmtRate, fmtSeconds } from './metrics.js';

export const SAMPLE_MS = 5000;
const KEEP = 60; // 5 minutes of samples

/**
 * Samples PodMetrics of namespace NS; returns { series: Map(pod -> [{t, cpu, mem}]), error }.
 * Stops when the component unmounts. A 403/404 stops sampling and is reported.
 */
export function usePodMetrics(ns) {
  const [state, setState] = useState({ series: new Map(), error: null });
  useEffect(() => {
    let stopped = false;
    const series = new Map();
    let timer;
    const sample = async () => {
      try {
        const list = await request(`/apis/metrics.k8s.io/v1beta1/namespaces/${ns}/pods`);
        const t = Date.now();
        for (const m of list.items || []) {
          let cpu = 0; let mem = 0;
          for (const c of m.containers || []) { cpu += quantity(c.usage.cpu); mem += quantity(c.usage.memory); }
          const s = series.get(m.metadata.name) || [];
          s.push({ t, cpu, mem });
          if (s.length > KEEP) s.shift();
          series.set(m.metadata.name, s);
        }
        if (!stopped) setState({ series: new Map(series), error: null });
      } catch (err) {
        if (!stopped) setState({ series: new Map(series), error: err });
        if (err.status === 403 || err.status === 404) return;
      }
      if (!stopped) timer = setTimeout(sample, SAMPLE_MS);
    };
    sample();
    return () => { stopped = true; clearTimeout(timer); };
  }, [ns]);
  return state;
}

/** Sums several pods' series into one, aligned on the sampling times. */
export function sumSeries(list) {
  const byTime = new Map();
  for (const s of list) for (const p of s) {
    const q = byTime.get(p.t) || { t: p.t, cpu: 0, mem: 0 };
    q.cpu += p.cpu; q.mem += p.mem;
    byTime.set(p.t, q);
  }
  return [...byTime.values()].sort((a, b) => a.t - b.t);
}

export const fmtCpu = (c) => (c >= 1 ? `${c.toFixed(2)} cores` : `${Math.round(c * 1000)}m`);
export function fmtBytes(b) {
  if (b >= 1024 ** 3) return `${(b / 1024 ** 3).toFixed(1)} GiB`;
  if (b >= 1024 ** 2) return `${(b / 1024 ** 2).toFixed(1)} MiB`;
  if (b >= 1024) return `${Math.round(b / 1024)} KiB`;
  return `${Math.round(b)} B`;
}

/**
 * A line chart of FIELD over the samples (or of several LINES, [{ field, cls }], on one scale),
 * with the latest value as text formatted by FMT. Null values leave a gap.
 */
export function Spark({ samples, field, label, width = 120, height = 28, fmt, lines, text }) {
  const format = fmt || (field === 'cpu' ? fmtCpu : fmtBytes);
  if (!samples || samples.length === 0) return html`<span class="muted">–</span>`;
  const drawn = lines || [{ field, cls: field }];
  // One sample draws a flat line, so a fresh pod shows its value at once.
  const points = samples.length === 1 ? [samples[0], samples[0]] : samples;
  const all = drawn.flatMap((l) => points.map((s) => s[l.field])).filter((v) => v !== null && v !== undefined);
  const max = Math.max(0, ...all) || 1;
  const n = Math.max(points.length - 1, 1);
  const y = (v) => (height - 2 - (v / max) * (height - 4)).toFixed(1);
  const paths = drawn.map((l) => {
    // A value between gaps is a short tick (a lone move would draw nothing).
    let d = ''; let pen = false;
    points.forEach((s, i) => {
      const v = s[l.field];
      const next = points[i + 1] && points[i + 1][l.field];
      if (v === null || v === undefined) { pen = false; return; }
      d += `${pen ? 'L' : 'M'}${((i / n) * width).toFixed(1)},${y(v)} `;
      if (!pen && (next === null || next === undefined)) d += i === points.length - 1 ? 'h-3 ' : 'h3 ';
      pen = true;
    });
    return { d: d.trim(), cls: l.cls };
  });
  const lastOf = (f) => points[points.length - 1][f];
  const last = lastOf(drawn[0].field);
  const peak = Math.max(0, ...points.map((s) => s[drawn[0].field]).filter((v) => v !== null && v !== undefined));
  const minutes = Math.max(1, Math.round((samples[samples.length - 1].t - samples[0].t) / 60000));
  const shown = text || format(last);
  const title = `${label}: ${shown} now, peak ${format(peak)} over ${minutes} min`;
  return html`<span class="spark">
    <svg width=${width} height=${height} viewBox="0 0 ${width} ${height}" role="img" aria-label=${title}>
      <title>${title}</title>
      ${paths.map((p) => html`<path d=${p.d} class=${`line ${p.cls}`} />`)}
    </svg>
    <span class="spark-value" data-value=${last === null || last === undefined ? '' : String(last)}>${shown}</span>
  </span>`;
}

/**
 * Requests/s and latency (p50 and p99) of PODS (names) from the node counters in METRICS (the
 * `useRequestMetrics` state): two sparklines, or why there are none.
 */
export function RequestGraphs({ metrics, pods, what, width = 120, height = 28, quiet }) {
  const { error, history } = metrics;
  if (error && error.forbidden && quiet) return html`<span class="muted">not allowed</span>`;
  if (error && error.forbidden) {
    return html`<span class="problem forbidden small" role="alert" data-graph="requests">
      <strong>Access denied.</strong> Request graphs read the nodes' metrics (<code>nodes/proxy</code>), which you may not get.</span>`;
  }
  if (!pods.length) return html`<span class="muted">no pods</span>`;
  const series = requestSeries(history, pods);
  if (series.length === 0) {
    return html`<span class="muted" role="status">${error ? `Request metrics unavailable: ${error.message}` : 'measuring…'}</span>`;
  }
  const last = series[series.length - 1];
  const latency = last.p50 === null ? 'no requests' : `p50 ${fmtSeconds(last.p50)} · p99 ${fmtSeconds(last.p99)}`;
  return html`<span class="request-graphs" data-count=${last.count} data-span=${last.span}>
    <span class="graph" data-graph="rps"><${Spark} samples=${series} field="rps" fmt=${fmtRate} label=${`Requests per second of ${what}`} width=${width} height=${height} /></span>
    <span class="graph" data-graph="latency"><${Spark} samples=${series} lines=${[{ field: 'p50', cls: 'p50' }, { field: 'p99', cls: 'p99' }]}
      fmt=${fmtSeconds} text=${latency} label=${`Latency (p50, p99) of ${what}`} width=${width} height=${height} /></span>
    ${error ? html`<span class="muted small">(last sample failed: ${error.message})</span>` : null}
  </span>`;
}
