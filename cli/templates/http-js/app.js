// {{name}}: a wasi:http component in JavaScript. Every request gets "Hello from {{name}}!" and
// the path it asked for. componentize-js runs this module in its JavaScript engine and serves
// the `fetch` event on the component's wasi:http/incoming-handler export.
addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  event.respondWith(
    new Response(`Hello from {{name}}! You asked for ${url.pathname}${url.search}\n`, {
      headers: { "content-type": "text/plain; charset=utf-8" },
    }),
  );
});
