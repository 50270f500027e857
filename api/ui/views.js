// Shared pieces (the watch hook, tables, messages, formatting) and the simpler views:
// namespaces, nodes, Services, Events.
import { useEffect, useLayoutEffect, useState } from 'preact/hooks';
import { html } from './html.js';
import { watchList, request, quantity } from './api.js';
import { usePodMetrics, sumSeries, Spark, RequestGraphs, fmtCpu, fmtBytes } from './charts.js';
import { useRequestMetrics } from './metrics.js';

export { html };

/**
 * A list kept current by a watch: { items, error, loading, remaining } (remaining: items the
 * server has still to send while the list's first page is shown, 0 once whole, null when it does
 * not say). PATH null: nothing.
 */
export function useWatch(path) {
  const [state, setState] = useState({ items: [], error: null, loading: true, remaining: 0 });
  // A layout effect: the list is asked for as the view is built, not a frame later.
  useLayoutEffect(() => {
    if (!path) return undefined;
    setState({ items: [], error: null, loading: true, remaining: 0 });
    const ctl = new AbortController();
    watchList(path, (items, error, remaining) => {
      if (error) setState((s) => ({ items: error.forbidden ? [] : s.items, error, loading: false, remaining: 0 }));
      else setState({ items, error: null, loading: false, remaining });
    }, ctl.signal);
    return () => ctl.abort();
  }, [path]);
  return state;
}

/** One-shot read (for objects that are not listed live), { data, error }. */
export function useGet(path) {
  const [state, setState] = useState({ data: null, error: null });
  useEffect(() => {
    let live = true;
    request(path).then((data) => live && setState({ data, error: null }),
      (error) => live && setState({ data: null, error }));
    return () => { live = false; };
  }, [path]);
  return state;
}

/** A refusal or failure, said plainly; a 403 names what the user may not do. */
export function Problem({ error, what }) {
  if (!error) return null;
  if (error.forbidden) {
    return html`<div class="problem forbidden" role="alert">
      <strong>Access denied.</strong> You are not allowed to ${what}.
      <div class="detail">${error.message}</div>
      <div class="hint">Ask a cluster administrator for a Role that grants it, or pick another namespace.</div>
    </div>`;
  }
  if (error.unauthorized) {
    return html`<div class="problem" role="alert"><strong>Not signed in.</strong> Your token was refused or has expired; sign in again.</div>`;
  }
  return html`<div class="problem" role="alert"><strong>Could not ${what}.</strong> ${error.message} <span class="hint">(retrying)</span></div>`;
}

export function age(ts) {
  if (!ts) return '';
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(ts)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

const collator = new Intl.Collator();
export const byName = (a, b) => collator.compare(a.metadata.name, b.metadata.name);

/** A titled section with a live list: loading, refusal, empty, or the table. */
export function Section({ title, state, what, empty, children, id }) {
  const hid = id || title.toLowerCase().replace(/[^a-z]+/g, '-');
  return html`<section aria-labelledby=${hid} class="panel">
    <h2 id=${hid}>${title} ${!state.error && !state.loading ? html`<span class="count">${state.remaining === null ? `${state.items.length}+` : state.items.length + (state.remaining || 0)}</span>` : null}</h2>
    <${Problem} error=${state.error} what=${what} />
    ${state.loading ? html`<p class="muted" role="status">Loading…</p>` : null}
    ${!state.loading && !(state.error && state.error.forbidden) && state.items.length === 0
      ? html`<p class="muted">${empty}</p>` : null}
    ${!state.loading && state.items.length > 0 ? children : null}
  </section>`;
}

export function Table({ caption, head, children }) {
  return html`<div class="table-wrap"><table>
    <caption class="sr-only">${caption}</caption>
    <thead><tr>${head.map((c) => html`<th scope="col">${c}</th>`)}</tr></thead>
    <tbody>${children}</tbody>
  </table></div>`;
}

function condition(obj, type) {
  return ((obj.status && obj.status.conditions) || []).find((c) => c.type === type);
}

export function Namespaces({ current, go }) {
  const state = useWatch('/api/v1/namespaces');
  return html`<${Section} title="Namespaces" state=${state} what="list namespaces" empty="No namespaces.">
    <${Table} caption="Namespaces" head=${['Name', 'Status', 'Age', '']}>
      ${state.items.sort(byName).map((n) => html`<tr key=${n.metadata.uid} class=${n.metadata.name === current ? 'current' : ''}>
        <td data-label="Name">${n.metadata.name}</td>
        <td data-label="Status">${n.status && n.status.phase}</td>
        <td data-label="Age">${age(n.metadata.creationTimestamp)}</td>
        <td><button type="button" onClick=${() => go(n.metadata.name, 'workloads')}
          aria-label=${`Open namespace ${n.metadata.name}`}>Open</button></td>
      </tr>`)}
    <//>
  <//>`;
}

export function Nodes() {
  const state = useWatch('/api/v1/nodes');
  const [usage, setUsage] = useState({ items: new Map(), error: null });
  useEffect(() => {
    let stopped = false; let timer;
    const sample = async () => {
      try {
        const l = await request('/apis/metrics.k8s.io/v1beta1/nodes');
        if (!stopped) setUsage({ items: new Map(l.items.map((m) => [m.metadata.name, m.usage])), error: null });
      } catch (error) {
        if (!stopped) setUsage((u) => ({ ...u, error }));
        if (error.status === 403 || error.status === 404) return;
      }
      if (!stopped) timer = setTimeout(sample, 5000);
    };
    sample();
    return () => { stopped = true; clearTimeout(timer); };
  }, []);
  const bar = (used, cap, fmt) => {
    if (!cap) return '';
    const pct = Math.min(100, Math.round((used / cap) * 100));
    return html`<span class="bar" role="meter" aria-valuemin="0" aria-valuemax="100" aria-valuenow=${pct}
      aria-label=${`${pct}% used`}><span class="fill" style=${{ width: `${pct}%` }}></span></span>
      <span class="small">${fmt(used)} / ${fmt(cap)} (${pct}%)</span>`;
  };
  return html`<${Section} title="Nodes" state=${state} what="list nodes (a cluster-wide permission)" empty="No nodes.">
    ${usage.error && !state.error ? html`<p class="muted">Usage unavailable: ${usage.error.message}</p>` : null}
    <${Table} caption="Nodes" head=${['Name', 'Ready', 'CPU', 'Memory', 'Pods', 'Version', 'Age']}>
      ${state.items.sort(byName).map((n) => {
        const ready = condition(n, 'Ready');
        const cap = (n.status && n.status.allocatable) || (n.status && n.status.capacity) || {};
        const u = usage.items.get(n.metadata.name);
        return html`<tr key=${n.metadata.uid}>
          <td data-label="Name">${n.metadata.name}${n.spec && n.spec.unschedulable ? html` <span class="badge warn">cordoned</span>` : null}</td>
          <td data-label="Ready"><span class=${`badge ${ready && ready.status === 'True' ? 'ok' : 'bad'}`}>${ready ? (ready.status === 'True' ? 'Ready' : 'NotReady') : 'Unknown'}</span></td>
          <td data-label="CPU">${u ? bar(quantity(u.cpu), quantity(cap.cpu), fmtCpu) : `capacity ${cap.cpu || '?'}`}</td>
          <td data-label="Memory">${u ? bar(quantity(u.memory), quantity(cap.memory), fmtBytes) : `capacity ${cap.memory ? fmtBytes(quantity(cap.memory)) : '?'}`}</td>
          <td data-label="Pods">${cap.pods || ''}</td>
          <td data-label="Version">${n.status && n.status.nodeInfo && n.status.nodeInfo.kubeletVersion}</td>
          <td data-label="Age">${age(n.metadata.creationTimestamp)}</td>
        </tr>`;
      })}
    <//>
  <//>`;
}

function selects(selector, labels) {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([k, v]) => labels && labels[k] === v);
}

/** The ingress address `skiff up` publishes (kube-public/skiff-info), when the user may read it. */
function useIngressAddress() {
  const { data } = useGet('/api/v1/namespaces/kube-public/configmaps/skiff-info');
  return data && data.data && data.data.ingress;
}

export function Services({ ns, openProxy }) {
  const services = useWatch(`/api/v1/namespaces/${ns}/services`);
  const slices = useWatch(`/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices`);
  const ingresses = useWatch(`/apis/networking.k8s.io/v1/namespaces/${ns}/ingresses`);
  const pods = useWatch(`/api/v1/namespaces/${ns}/pods`);
  const metrics = usePodMetrics(ns);
  const selected = (s) => pods.items.filter((p) => selects(s.spec.selector, p.metadata.labels));
  const served = services.items.flatMap(selected);
  const requests = useRequestMetrics(ns, served.map((p) => p.spec.nodeName));
  const address = useIngressAddress();
  const urls = (svc) => {
    const out = [];
    for (const ing of ingresses.items) {
      for (const rule of ing.spec.rules || []) {
        for (const p of (rule.http && rule.http.paths) || []) {
          if (p.backend && p.backend.service && p.backend.service.name === svc.metadata.name) {
            const lb = ((ing.status && ing.status.loadBalancer && ing.status.loadBalancer.ingress) || [])[0];
            const port = address && address.includes(':') ? `:${address.split(':').pop()}` : '';
            const base = rule.host ? `${rule.host}${port}` : (address || (lb && (lb.hostname || lb.ip)));
            if (!base) continue;
            out.push(`http://${base}${p.path || '/'}`);
          }
        }
      }
    }
    return out;
  };
  const endpoints = (svc) => slices.items
    .filter((s) => s.metadata.labels && s.metadata.labels['kubernetes.io/service-name'] === svc.metadata.name)
    .flatMap((s) => (s.endpoints || []).map((e) => ({
      addr: (e.addresses || []).join(','),
      ready: !e.conditions || e.conditions.ready !== false,
      pod: e.targetRef && e.targetRef.name,
    })));
  return html`<${Section} title="Services" state=${services} what=${`list Services in namespace ${ns}`} empty="No Services in this namespace.">
    ${requests.error && requests.error.forbidden ? html`<p class="problem forbidden small" role="alert" data-graph="requests"><strong>Access denied.</strong>
      Request graphs read the nodes' metrics (<code>nodes/proxy</code>), which you may not get; the other columns are unaffected.</p>` : null}
    <${Table} caption="Services" head=${['Name', 'Type', 'Cluster IP', 'Ports', 'Endpoints', 'URLs', 'CPU', 'Memory', 'Requests (last minute)']}>
      ${services.items.sort(byName).map((s) => {
        const eps = endpoints(s);
        const mine = selected(s);
        const series = sumSeries(mine.map((p) => metrics.series.get(p.metadata.name) || []));
        const port = (s.spec.ports || [])[0];
        return html`<tr key=${s.metadata.uid} class="service" data-name=${s.metadata.name}>
          <td data-label="Name">${s.metadata.name}</td>
          <td data-label="Type">${s.spec.type}</td>
          <td data-label="Cluster IP">${s.spec.clusterIP}</td>
          <td data-label="Ports">${(s.spec.ports || []).map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol || 'TCP'}`).join(', ')}</td>
          <td data-label="Endpoints">${slices.error ? html`<span class="muted">not allowed</span>` : eps.length === 0 ? html`<span class="muted">none</span>`
            : html`<ul class="plain">${eps.map((e) => html`<li><span class=${`dot ${e.ready ? 'ok' : 'bad'}`} aria-label=${e.ready ? 'ready' : 'not ready'}></span>${e.addr}${e.pod ? html` <span class="muted">${e.pod}</span>` : ''}</li>`)}</ul>`}</td>
          <td data-label="URLs">
            ${urls(s).map((u) => html`<div><a href=${u} target="_blank" rel="noopener noreferrer">${u}</a></div>`)}
            ${port && s.spec.selector ? html`<button type="button" class="link" onClick=${() => openProxy(`/api/v1/namespaces/${ns}/services/${s.metadata.name}:${port.name || port.port}/proxy/`, `Service ${s.metadata.name}`)}>Open via API</button>` : null}
          </td>
          <td data-label="CPU"><${Spark} samples=${series} field="cpu" label=${`CPU of Service ${s.metadata.name}`} /></td>
          <td data-label="Memory"><${Spark} samples=${series} field="mem" label=${`Memory of Service ${s.metadata.name}`} /></td>
          <td data-label="Requests">${s.spec.selector ? html`<${RequestGraphs} metrics=${requests} quiet=${true}
            pods=${mine.map((p) => p.metadata.name)} what=${`Service ${s.metadata.name}`} width=${80} />` : html`<span class="muted">no selector</span>`}</td>
        </tr>`;
      })}
    <//>
  <//>`;
}

export function Events({ ns }) {
  const state = useWatch(`/api/v1/namespaces/${ns}/events`);
  const when = (e) => e.lastTimestamp || e.eventTime || e.firstTimestamp || e.metadata.creationTimestamp;
  const items = [...state.items].sort((a, b) => Date.parse(when(b) || 0) - Date.parse(when(a) || 0)).slice(0, 300);
  return html`<${Section} title="Events" state=${{ ...state, items }} what=${`list Events in namespace ${ns}`} empty="No events in this namespace.">
    <${Table} caption="Events, newest first" head=${['Age', 'Type', 'Reason', 'Object', 'Message', 'Count']}>
      ${items.map((e) => html`<tr key=${e.metadata.uid}>
        <td data-label="Age">${age(when(e))}</td>
        <td data-label="Type"><span class=${`badge ${e.type === 'Warning' ? 'warn' : 'ok'}`}>${e.type}</span></td>
        <td data-label="Reason">${e.reason}</td>
        <td data-label="Object">${e.involvedObject && `${e.involvedObject.kind}/${e.involvedObject.name}`}</td>
        <td data-label="Message" class="wrap">${e.message}</td>
        <td data-label="Count">${e.count || 1}</td>
      </tr>`)}
    <//>
  <//>`;
}
