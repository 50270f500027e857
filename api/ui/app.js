// The console's shell: sign-in (bearer token or client certificate), navigation by URL hash
// (`#/ns/NAMESPACE/VIEW[/NAME]`, `#/nodes`, `#/namespaces`), and the dialog that shows what a
// pod's or Service's URL answers through the API server's proxy.
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { html } from './html.js';
import { session, whoami, proxyGet } from './api.js';
import { useWatch, Namespaces, Nodes, Services, Events } from './views.js';
import { Workloads } from './workloads.js';
import { Pods, PodPage } from './pods.js';

const VIEWS = [
  ['workloads', 'Workloads'],
  ['pods', 'Pods'],
  ['services', 'Services'],
  ['events', 'Events'],
];

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'ns' && parts[1]) return { ns: parts[1], view: parts[2] || 'workloads', name: parts[3] };
  if (parts[0] === 'nodes' || parts[0] === 'namespaces') return { view: parts[0] };
  return {};
}

function useHash() {
  const [route, setRoute] = useState(parseHash());
  useEffect(() => {
    const on = () => setRoute(parseHash());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

/** The namespace a user most likely means: a ServiceAccount's own, else `default`. */
function homeNamespace(user) {
  const m = /^system:serviceaccount:([^:]+):/.exec(user.username || '');
  return m ? m[1] : 'default';
}

function Login({ message, onDone }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState(message);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const t = token.trim();
    if (!t) { setError('Paste a bearer token first.'); return; }
    setBusy(true);
    session.setToken(t);
    try {
      onDone(await whoami(), 'token');
    } catch (err) {
      session.clear();
      setError(err.unauthorized ? 'The API server refused this token (unknown, expired or malformed).' : `Sign-in failed: ${err.message}`);
    } finally { setBusy(false); }
  };
  return html`<main class="login" id="main">
    <form class="panel" onSubmit=${submit} aria-labelledby="login-title">
      <h1 id="login-title"><img src="favicon.svg" alt="" width="28" height="28" /> Skiff console</h1>
      <p>Sign in with a bearer token, e.g. from <code>kubectl create token NAME -n NAMESPACE</code>.
        A browser that holds your kubeconfig's client certificate is signed in without one.</p>
      <label for="token">Bearer token</label>
      <input id="token" name="token" type="password" autocomplete="off" spellcheck="false"
        value=${token} onInput=${(e) => setToken(e.currentTarget.value)} required />
      ${error ? html`<p class="problem" role="alert">${error}</p>` : null}
      <button type="submit" disabled=${busy}>${busy ? 'Signing in…' : 'Sign in'}</button>
      <p class="muted small">The token stays in this tab's session storage and is sent only to this API server.</p>
    </form>
  </main>`;
}

function ProxyDialog({ target, onClose }) {
  const ref = useRef(null);
  const [answer, setAnswer] = useState(null);
  useEffect(() => {
    if (!target) return;
    setAnswer(null);
    if (ref.current && !ref.current.open) ref.current.showModal();
    proxyGet(target.path).then(setAnswer, (err) => setAnswer({ status: 0, statusText: err.message, text: '' }));
  }, [target]);
  if (!target) return null;
  return html`<dialog ref=${ref} class="panel proxy" aria-labelledby="proxy-title" onClose=${onClose}>
    <h2 id="proxy-title">${target.title}</h2>
    <p class="small">Through the API server: <a href=${target.path} target="_blank" rel="noopener noreferrer">${target.path}</a>
      <span class="muted"> (opening the link directly needs the browser's client certificate)</span></p>
    ${answer ? html`<p><strong>${answer.status} ${answer.statusText}</strong></p><pre class="log">${answer.text.slice(0, 8000)}</pre>`
      : html`<p class="muted" role="status">Loading…</p>`}
    <form method="dialog"><button type="submit" autofocus>Close</button></form>
  </dialog>`;
}

function NamespacePicker({ ns, view }) {
  const list = useWatch('/api/v1/namespaces');
  const [value, setValue] = useState(ns);
  useEffect(() => setValue(ns), [ns]);
  const go = (e) => {
    e.preventDefault();
    const v = value.trim();
    if (v) location.hash = `#/ns/${encodeURIComponent(v)}/${VIEWS.some(([k]) => k === view) ? view : 'workloads'}`;
  };
  return html`<form class="ns-picker" onSubmit=${go} role="search">
    <label for="ns">Namespace</label>
    <input id="ns" list="ns-list" value=${value} onInput=${(e) => setValue(e.currentTarget.value)} autocomplete="off" spellcheck="false" />
    <datalist id="ns-list">${list.items.map((n) => html`<option value=${n.metadata.name}></option>`)}</datalist>
    <button type="submit">Go</button>
  </form>`;
}

function Shell({ user, how, onLogout }) {
  const route = useHash();
  const home = homeNamespace(user);
  const ns = route.ns || home;
  const view = route.view || 'workloads';
  const [proxy, setProxy] = useState(null);
  const openProxy = (path, title) => setProxy({ path, title: `Open ${title}` });
  useEffect(() => {
    document.title = `${route.name || view} · ${route.ns ? `${ns} · ` : ''}Skiff console`;
  }, [view, ns, route.name]);
  let page;
  if (view === 'nodes') page = html`<${Nodes} />`;
  else if (view === 'namespaces') page = html`<${Namespaces} current=${ns} go=${(n, v) => { location.hash = `#/ns/${n}/${v}`; }} />`;
  else if (view === 'pods' && route.name) page = html`<${PodPage} key=${`${ns}/${route.name}`} ns=${ns} name=${route.name} openProxy=${openProxy} />`;
  else if (view === 'pods') page = html`<${Pods} key=${ns} ns=${ns} openProxy=${openProxy} />`;
  else if (view === 'services') page = html`<${Services} key=${ns} ns=${ns} openProxy=${openProxy} />`;
  else if (view === 'events') page = html`<${Events} key=${ns} ns=${ns} />`;
  else page = html`<${Workloads} key=${ns} ns=${ns} />`;
  const link = (href, label, active) => html`<li><a href=${href} aria-current=${active ? 'page' : undefined}>${label}</a></li>`;
  return html`<a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById('main').focus(); }}>Skip to content</a>
    <header class="top">
      <div class="brand"><img src="favicon.svg" alt="" width="24" height="24" /> Skiff</div>
      <${NamespacePicker} ns=${ns} view=${view} />
      <div class="user">
        <span title=${(user.groups || []).join(', ')}>${user.username || 'unknown user'}</span>
        ${how === 'token' ? html`<button type="button" onClick=${onLogout}>Sign out</button>`
          : html`<span class="muted small">(client certificate)</span>`}
      </div>
    </header>
    <nav aria-label="Views"><ul>
      ${VIEWS.map(([k, label]) => link(`#/ns/${ns}/${k}`, label, view === k))}
      ${link('#/nodes', 'Nodes', view === 'nodes')}
      ${link('#/namespaces', 'Namespaces', view === 'namespaces')}
    </ul></nav>
    <main id="main" tabindex="-1">
      <h1 class="view-title">${VIEWS.find(([k]) => k === view)?.[1] || (view === 'nodes' ? 'Nodes' : 'Namespaces')}${route.ns || !['nodes', 'namespaces'].includes(view) ? html` <span class="muted">in ${ns}</span>` : null}</h1>
      ${page}
    </main>
    <${ProxyDialog} target=${proxy} onClose=${() => setProxy(null)} />`;
}

function App() {
  const [auth, setAuthState] = useState({ state: 'checking' });
  const setAuth = (a) => {
    // Signed in without a view in the URL: the user's home namespace, before the shell renders.
    if (a.state === 'in' && !location.hash) history.replaceState(null, '', `#/ns/${homeNamespace(a.user)}/workloads`);
    setAuthState(a);
  };
  useEffect(() => {
    // A kept token, else whatever the browser presents (a client certificate), else sign in.
    whoami().then(
      (user) => setAuth({ state: 'in', user, how: session.token() ? 'token' : 'certificate' }),
      (err) => {
        const had = session.token();
        session.clear();
        setAuth({ state: 'out', message: had && err.unauthorized ? 'Your session expired; sign in again.' : (err.unauthorized ? null : err.message) });
      },
    );
  }, []);
  if (auth.state === 'checking') return html`<p class="loading" role="status">Checking your credentials…</p>`;
  if (auth.state === 'out') {
    return html`<${Login} message=${auth.message} onDone=${(user, how) => setAuth({ state: 'in', user, how })} />`;
  }
  return html`<${Shell} user=${auth.user} how=${auth.how} onLogout=${() => { session.clear(); location.hash = ''; setAuth({ state: 'out' }); }} />`;
}

render(html`<${App} />`, document.getElementById('app'));
