// Workloads: Deployments, StatefulSets, DaemonSets and Jobs with their rollout state, and the
// actions a user expects (scale, restart a rollout).
import { useState } from 'preact/hooks';
import { html } from './html.js';
import { patch } from './api.js';
import { useWatch, Section, Table, age, byName } from './views.js';

/** The rollout state as `kubectl rollout status` words it: [text, 'ok' | 'warn' | 'bad']. */
export function deploymentState(d) {
  const st = d.status || {};
  const want = d.spec.replicas ?? 1;
  const progressing = (st.conditions || []).find((c) => c.type === 'Progressing');
  if ((d.metadata.generation || 0) > (st.observedGeneration || 0)) return ['Waiting for the controller', 'warn'];
  if (progressing && progressing.reason === 'ProgressDeadlineExceeded') return [`Failed: ${progressing.message || 'progress deadline exceeded'}`, 'bad'];
  const updated = st.updatedReplicas || 0;
  const total = st.replicas || 0;
  const available = st.availableReplicas || 0;
  if (updated < want) return [`Rolling out: ${updated} of ${want} updated`, 'warn'];
  if (total > updated) return [`Rolling out: ${total - updated} old pending termination`, 'warn'];
  if (available < updated) return [`Rolling out: ${available} of ${updated} available`, 'warn'];
  return ['Complete', 'ok'];
}

function statefulSetState(s) {
  const st = s.status || {};
  const want = s.spec.replicas ?? 1;
  if ((s.metadata.generation || 0) > (st.observedGeneration || 0)) return ['Waiting for the controller', 'warn'];
  if ((st.updatedReplicas || 0) < want && st.updateRevision && st.currentRevision !== st.updateRevision) {
    return [`Rolling out: ${st.updatedReplicas || 0} of ${want} updated`, 'warn'];
  }
  if ((st.readyReplicas || 0) < want) return [`${st.readyReplicas || 0} of ${want} ready`, 'warn'];
  return ['Complete', 'ok'];
}

function daemonSetState(d) {
  const st = d.status || {};
  const want = st.desiredNumberScheduled || 0;
  if ((d.metadata.generation || 0) > (st.observedGeneration || 0)) return ['Waiting for the controller', 'warn'];
  if ((st.updatedNumberScheduled || 0) < want) return [`Rolling out: ${st.updatedNumberScheduled || 0} of ${want} updated`, 'warn'];
  if ((st.numberAvailable || 0) < want) return [`${st.numberAvailable || 0} of ${want} available`, 'warn'];
  return ['Complete', 'ok'];
}

function jobState(j) {
  const conds = (j.status && j.status.conditions) || [];
  const done = conds.find((c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True');
  if (done) return [done.type === 'Complete' ? 'Complete' : `Failed: ${done.reason || ''}`, done.type === 'Complete' ? 'ok' : 'bad'];
  if (j.spec.suspend) return ['Suspended', 'warn'];
  return [`Running (${(j.status && j.status.active) || 0} active)`, 'warn'];
}

const State = ({ s }) => html`<span class=${`badge ${s[1]}`}>${s[0]}</span>`;

/** Scale (replicas input) and restart (the restartedAt annotation, as `kubectl rollout restart`). */
function Actions({ path, obj, kind, scalable }) {
  const [replicas, setReplicas] = useState(String(obj.spec.replicas ?? 1));
  const [note, setNote] = useState(null);
  const name = obj.metadata.name;
  const run = async (what, body) => {
    setNote({ text: `${what}…`, cls: 'muted' });
    try {
      await patch(`${path}/${name}`, body);
      setNote({ text: `${what}: done`, cls: 'ok-text' });
    } catch (err) {
      setNote({ text: err.forbidden ? `${what} refused: ${err.message}` : `${what} failed: ${err.message}`, cls: 'bad-text' });
    }
  };
  const scale = (e) => {
    e.preventDefault();
    const n = Number(replicas);
    if (!Number.isInteger(n) || n < 0) { setNote({ text: 'Replicas must be a whole number, 0 or more', cls: 'bad-text' }); return; }
    run(`Scale to ${n}`, { spec: { replicas: n } });
  };
  const restart = () => run('Restart', {
    spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() } } } },
  });
  const id = `replicas-${kind}-${name}`;
  return html`<div class="actions">
    ${scalable ? html`<form class="scale" onSubmit=${scale}>
      <label for=${id}>Replicas</label>
      <input id=${id} type="number" min="0" inputmode="numeric" value=${replicas}
        onInput=${(e) => setReplicas(e.currentTarget.value)} />
      <button type="submit" aria-label=${`Scale ${kind} ${name}`}>Scale</button>
    </form>` : null}
    <button type="button" onClick=${restart} aria-label=${`Restart ${kind} ${name}`}>Restart</button>
    ${note ? html`<span class=${`note ${note.cls}`} role="status">${note.text}</span>` : null}
  </div>`;
}

export function Workloads({ ns }) {
  const base = `/apis/apps/v1/namespaces/${ns}`;
  const deployments = useWatch(`${base}/deployments`);
  const statefulsets = useWatch(`${base}/statefulsets`);
  const daemonsets = useWatch(`${base}/daemonsets`);
  const jobs = useWatch(`/apis/batch/v1/namespaces/${ns}/jobs`);
  return html`
    <${Section} title="Deployments" state=${deployments} what=${`list Deployments in namespace ${ns}`} empty="No Deployments in this namespace.">
      <${Table} caption="Deployments" head=${['Name', 'Ready', 'Up to date', 'Available', 'Rollout', 'Age', 'Actions']}>
        ${deployments.items.sort(byName).map((d) => html`<tr key=${d.metadata.uid} data-name=${d.metadata.name}>
          <td data-label="Name">${d.metadata.name}</td>
          <td data-label="Ready" class="ready">${(d.status && d.status.readyReplicas) || 0}/${d.spec.replicas ?? 1}</td>
          <td data-label="Up to date">${(d.status && d.status.updatedReplicas) || 0}</td>
          <td data-label="Available">${(d.status && d.status.availableReplicas) || 0}</td>
          <td data-label="Rollout"><${State} s=${deploymentState(d)} /></td>
          <td data-label="Age">${age(d.metadata.creationTimestamp)}</td>
          <td data-label="Actions"><${Actions} path=${`${base}/deployments`} obj=${d} kind="Deployment" scalable=${true} /></td>
        </tr>`)}
      <//>
    <//>
    <${Section} title="StatefulSets" state=${statefulsets} what=${`list StatefulSets in namespace ${ns}`} empty="No StatefulSets in this namespace.">
      <${Table} caption="StatefulSets" head=${['Name', 'Ready', 'Rollout', 'Age', 'Actions']}>
        ${statefulsets.items.sort(byName).map((s) => html`<tr key=${s.metadata.uid}>
          <td data-label="Name">${s.metadata.name}</td>
          <td data-label="Ready">${(s.status && s.status.readyReplicas) || 0}/${s.spec.replicas ?? 1}</td>
          <td data-label="Rollout"><${State} s=${statefulSetState(s)} /></td>
          <td data-label="Age">${age(s.metadata.creationTimestamp)}</td>
          <td data-label="Actions"><${Actions} path=${`${base}/statefulsets`} obj=${s} kind="StatefulSet" scalable=${true} /></td>
        </tr>`)}
      <//>
    <//>
    <${Section} title="DaemonSets" state=${daemonsets} what=${`list DaemonSets in namespace ${ns}`} empty="No DaemonSets in this namespace.">
      <${Table} caption="DaemonSets" head=${['Name', 'Desired', 'Ready', 'Rollout', 'Age', 'Actions']}>
        ${daemonsets.items.sort(byName).map((d) => html`<tr key=${d.metadata.uid}>
          <td data-label="Name">${d.metadata.name}</td>
          <td data-label="Desired">${(d.status && d.status.desiredNumberScheduled) || 0}</td>
          <td data-label="Ready">${(d.status && d.status.numberReady) || 0}</td>
          <td data-label="Rollout"><${State} s=${daemonSetState(d)} /></td>
          <td data-label="Age">${age(d.metadata.creationTimestamp)}</td>
          <td data-label="Actions"><${Actions} path=${`${base}/daemonsets`} obj=${d} kind="DaemonSet" scalable=${false} /></td>
        </tr>`)}
      <//>
    <//>
    <${Section} title="Jobs" state=${jobs} what=${`list Jobs in namespace ${ns}`} empty="No Jobs in this namespace.">
      <${Table} caption="Jobs" head=${['Name', 'Completions', 'Failed', 'State', 'Age']}>
        ${jobs.items.sort(byName).map((j) => html`<tr key=${j.metadata.uid}>
          <td data-label="Name">${j.metadata.name}</td>
          <td data-label="Completions">${(j.status && j.status.succeeded) || 0}/${j.spec.completions ?? 1}</td>
          <td data-label="Failed">${(j.status && j.status.failed) || 0}</td>
          <td data-label="State"><${State} s=${jobState(j)} /></td>
          <td data-label="Age">${age(j.metadata.creationTimestamp)}</td>
        </tr>`)}
      <//>
    <//>`;
}
