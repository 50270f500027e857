// Usage graphs: the page samples metrics.k8s.io every few seconds (the metrics API's own data,
// no object polling) and draws the last minutes as small inline SVG line charts.
import { html } from './html.js';
import { useEffect, useState } from 'preact/hooks';
import { request, quantity } from './api.js';

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

/** A line chart of FIELD over the samples, with its latest value as text. */
export function Spark({ samples, field, label, width = 120, height = 28 }) {
  const fmt = field === 'cpu' ? fmtCpu : fmtBytes;
  if (!samples || samples.length === 0) return html`<span class="muted">–</span>`;
  // One sample draws a flat line, so a fresh pod shows its value at once.
  const values = samples.length === 1 ? [samples[0][field], samples[0][field]] : samples.map((s) => s[field]);
  const max = Math.max(...values) || 1;
  const last = values[values.length - 1];
  const n = Math.max(values.length - 1, 1);
  const points = values
    .map((v, i) => `${((i / n) * width).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`)
    .join(' ');
  const minutes = Math.max(1, Math.round((samples[samples.length - 1].t - samples[0].t) / 60000));
  const title = `${label}: ${fmt(last)} now, peak ${fmt(max)} over ${minutes} min`;
  return html`<span class="spark">
    <svg width=${width} height=${height} viewBox="0 0 ${width} ${height}" role="img" aria-label=${title}>
      <title>${title}</title>
      <polyline points=${points} class=${`line ${field}`} />
    </svg>
    <span class="spark-value">${fmt(last)}</span>
  </span>`;
}
