// Pods: the live list (status, node, restarts, usage graphs) and one pod's page with its
// streamed log; actions: delete, open the pod's URL (through the API server's pods/proxy).
import { Component } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { html } from './html.js';
import { request, followLog } from './api.js';
import { usePodMetrics, Spark, RequestGraphs } from './charts.js';
import { useRequestMetrics } from './metrics.js';
import { useWatch, Section, Table, Problem, age, byName } from './views.js';

/** Rows drawn (and per "Show more"): a table of thousands would be slow and unread. */
const PAGE = 200;
/** Rows drawn in the first frame, more than a screen holds; the rest of the page follows. */
export const FIRST_ROWS = 40;

/** The status column as kubectl prints it: a waiting/terminated reason, else the phase. */
export function podStatus(p) {
  if (p.metadata.deletionTimestamp) return ['Terminating', 'warn'];
  const st = p.status || {};
  for (const c of st.containerStatuses || []) {
    if (c.state && c.state.waiting && c.state.waiting.reason) return [c.state.waiting.reason, /BackOff|Err|Invalid/.test(c.state.waiting.reason) ? 'bad' : 'warn'];
    if (c.state && c.state.terminated && c.state.terminated.reason && st.phase !== 'Succeeded') return [c.state.terminated.reason, 'bad'];
  }
  const phase = st.phase || 'Pending';
  return [phase, { Running: 'ok', Succeeded: 'ok', Failed: 'bad' }[phase] || 'warn'];
}

const restarts = (p) => ((p.status && p.status.containerStatuses) || []).reduce((n, c) => n + (c.restartCount || 0), 0);
const readyCount = (p) => {
  const cs = (p.status && p.status.containerStatuses) || [];
  return `${cs.filter((c) => c.ready).length}/${(p.spec.containers || []).length}`;
};
const firstPort = (p) => {
  for (const c of p.spec.containers || []) for (const port of c.ports || []) return port.containerPort;
  return null;
};

function DeleteButton({ ns, name, onDone }) {
  const [armed, setArmed] = useState(false);
  const [note, setNote] = useState(null);
  const del = async () => {
    if (!armed) { setArmed(true); return; }
    setArmed(false);
    try {
      await request(`/api/v1/namespaces/${ns}/pods/${name}`, { method: 'DELETE' });
      setNote('Deleting');
      onDone && onDone();
    } catch (err) { setNote(err.forbidden ? `Refused: ${err.message}` : `Failed: ${err.message}`); }
  };
  return html`<button type="button" class=${armed ? 'danger' : ''} onClick=${del}
      onBlur=${() => setArmed(false)} aria-label=${armed ? `Confirm deleting pod ${name}` : `Delete pod ${name}`}>
      ${armed ? 'Confirm delete' : 'Delete'}</button>${note ? html`<span class="note" role="status">${note}</span>` : null}`;
}

/** One row of the pod list; drawn again only when its props change. */
class PodRow extends Component {
  shouldComponentUpdate(next) {
    const p = this.props;
    return next.pod !== p.pod || next.series !== p.series || next.at !== p.at || next.ns !== p.ns;
  }

  render({ pod: p, ns, series, openProxy }) {
    const s = podStatus(p);
    const port = firstPort(p);
    return html`<tr class="pod" data-name=${p.metadata.name}>
      <td data-label="Name"><a href=${`#/ns/${ns}/pods/${p.metadata.name}`}>${p.metadata.name}</a></td>
      <td data-label="Status"><span class=${`badge ${s[1]}`}>${s[0]}</span></td>
      <td data-label="Ready">${readyCount(p)}</td>
      <td data-label="Restarts">${restarts(p)}</td>
      <td data-label="Node">${p.spec.nodeName || html`<span class="muted">unscheduled</span>`}</td>
      <td data-label="IP">${p.status && p.status.podIP}</td>
      <td data-label="Age">${age(p.metadata.creationTimestamp)}</td>
      <td data-label="CPU"><${Spark} samples=${series} field="cpu" label=${`CPU of pod ${p.metadata.name}`} /></td>
      <td data-label="Memory"><${Spark} samples=${series} field="mem" label=${`Memory of pod ${p.metadata.name}`} /></td>
      <td data-label="Actions"><div class="actions">
        <a class="button" href=${`#/ns/${ns}/pods/${p.metadata.name}`} aria-label=${`Logs of pod ${p.metadata.name}`}>Logs</a>
        ${port ? html`<button type="button" onClick=${() => openProxy(`/api/v1/namespaces/${ns}/pods/${p.metadata.name}:${port}/proxy/`, `pod ${p.metadata.name}`)}
          aria-label=${`Open the URL of pod ${p.metadata.name}`}>Open</button>` : null}
        <${DeleteButton} ns=${ns} name=${p.metadata.name} />
      </div></td>
    </tr>`;
  }
}

export function Pods({ ns, openProxy }) {
  const state = useWatch(`/api/v1/namespaces/${ns}/pods`);
  const metrics = usePodMetrics(ns);
  const [filter, setFilter] = useState('');
  const [limit, setLimit] = useState(PAGE);
  // The first screen of rows is drawn at once, the rest of the page in a task after the whole
  // list is in.
  const [firstFrame, setFirstFrame] = useState(true);
  const any = state.items.length > 0;
  const whole = any && state.remaining === 0;
  useEffect(() => {
    if (!whole) return undefined;
    let t;
    const f = requestAnimationFrame(() => { t = setTimeout(() => setFirstFrame(false), 0); });
    return () => { cancelAnimationFrame(f); clearTimeout(t); };
  }, [whole]);
  // Rows are drawn again when their pod or usage changes, or every 5 s (their age).
  const at = Math.floor(Date.now() / 5000);
  const wanted = filter.trim().toLowerCase();
  const pods = state.items
    .filter((p) => !wanted || p.metadata.name.includes(wanted) || (p.spec.nodeName || '').includes(wanted))
    .sort(byName);
  const shown = pods.slice(0, firstFrame ? Math.min(limit, FIRST_ROWS) : limit);
  return html`<${Section} title="Pods" state=${state} what=${`list pods in namespace ${ns}`} empty="No pods in this namespace.">
    <div class="filter">
      <label for="pod-filter">Filter by name or node</label>
      <input id="pod-filter" type="search" value=${filter} onInput=${(e) => { setFilter(e.currentTarget.value); setLimit(PAGE); }} />
      ${pods.length > shown.length ? html`<span class="muted small" role="status">Showing ${shown.length} of ${pods.length}</span>` : null}
    </div>
    <${Table} caption="Pods" head=${['Name', 'Status', 'Ready', 'Restarts', 'Node', 'IP', 'Age', 'CPU', 'Memory', 'Actions']}>
      ${shown.map((p) => html`<${PodRow} key=${p.metadata.uid} pod=${p} ns=${ns} series=${metrics.series.get(p.metadata.name)}
        at=${at} openProxy=${openProxy} />`)}
    <//>
    ${pods.length > shown.length ? html`<p><button type="button" onClick=${() => setLimit(limit + PAGE)}>
      Show ${Math.min(PAGE, pods.length - shown.length)} more of ${pods.length - shown.length}</button></p>` : null}
  <//>`;
}

/** The pod's log, followed live; the newest lines stay in view unless the user scrolls up. */
function Log({ ns, name, container }) {
  const [text, setText] = useState('');
  const [error, setError] = useState(null);
  const [ended, setEnded] = useState(false);
  const pre = useRef(null);
  useEffect(() => {
    const ctl = new AbortController();
    let buf = '';
    setText(''); setError(null); setEnded(false);
    const follow = async () => {
      try {
        await followLog(ns, name, container, (chunk) => {
          buf += chunk;
          if (buf.length > 400000) buf = buf.slice(buf.length - 300000);
          setText(buf);
        }, ctl.signal);
        if (!ctl.signal.aborted) setEnded(true);
      } catch (err) { if (!ctl.signal.aborted) setError(err); }
    };
    follow();
    return () => ctl.abort();
  }, [ns, name, container]);
  useEffect(() => {
    const el = pre.current;
    if (el && el.scrollHeight - el.scrollTop - el.clientHeight < 80) el.scrollTop = el.scrollHeight;
  }, [text]);
  return html`<section class="panel" aria-labelledby="log-title">
    <h2 id="log-title">Log${container ? ` of ${container}` : ''} <span class="live" aria-hidden="true">${ended ? 'ended' : '● live'}</span></h2>
    <${Problem} error=${error} what=${`read the log of pod ${name}`} />
    ${error && error.forbidden ? null : html`<pre class="log" id="pod-log" ref=${pre} tabindex="0" aria-live="off" aria-label=${`Log of pod ${name}`}>${text}</pre>`}
  </section>`;
}

export function PodPage({ ns, name, openProxy }) {
  const state = useWatch(`/api/v1/namespaces/${ns}/pods?fieldSelector=${encodeURIComponent(`metadata.name=${name}`)}`);
  const metrics = usePodMetrics(ns);
  const pod = state.items[0];
  const requests = useRequestMetrics(ns, [pod && pod.spec.nodeName]);
  const [container, setContainer] = useState('');
  const containers = pod ? (pod.spec.containers || []).map((c) => c.name) : [];
  const series = metrics.series.get(name);
  const s = pod && podStatus(pod);
  const port = pod && firstPort(pod);
  return html`<div>
    <p><a href=${`#/ns/${ns}/pods`}>← Pods in ${ns}</a></p>
    <section class="panel" aria-labelledby="pod-title">
      <h2 id="pod-title">Pod ${name}</h2>
      <${Problem} error=${state.error} what=${`read pod ${name} in namespace ${ns}`} />
      ${!state.loading && !state.error && !pod ? html`<p class="muted">The pod ${name} no longer exists.</p>` : null}
      ${pod ? html`<dl class="facts">
          <dt>Status</dt><dd><span class=${`badge ${s[1]}`}>${s[0]}</span></dd>
          <dt>Node</dt><dd>${pod.spec.nodeName || 'unscheduled'}</dd>
          <dt>IP</dt><dd>${pod.status && pod.status.podIP}</dd>
          <dt>Restarts</dt><dd>${restarts(pod)}</dd>
          <dt>Age</dt><dd>${age(pod.metadata.creationTimestamp)}</dd>
          <dt>Images</dt><dd>${(pod.spec.containers || []).map((c) => c.image).join(', ')}</dd>
          <dt>CPU</dt><dd><${Spark} samples=${series} field="cpu" label=${`CPU of pod ${name}`} width=${200} height=${40} /></dd>
          <dt>Memory</dt><dd><${Spark} samples=${series} field="mem" label=${`Memory of pod ${name}`} width=${200} height=${40} /></dd>
          <dt>Requests</dt><dd>${pod.spec.nodeName ? html`<${RequestGraphs} metrics=${requests} pods=${[name]} what=${`pod ${name}`} width=${200} height=${40} />`
            : html`<span class="muted">not scheduled</span>`}</dd>
        </dl>
        <div class="actions">
          ${containers.length > 1 ? html`<label for="container">Container</label>
            <select id="container" value=${container} onChange=${(e) => setContainer(e.currentTarget.value)}>
              ${containers.map((c) => html`<option value=${c}>${c}</option>`)}</select>` : null}
          ${port ? html`<button type="button" onClick=${() => openProxy(`/api/v1/namespaces/${ns}/pods/${name}:${port}/proxy/`, `pod ${name}`)}>Open URL</button>` : null}
          <${DeleteButton} ns=${ns} name=${name} />
        </div>` : null}
    </section>
    ${pod ? html`<${Log} ns=${ns} name=${name} container=${container || containers[0] || ''} />` : null}
  </div>`;
}
