// wasmdyno's wasi:http adapter for JavaScript apps. It is evaluated before the app's module (ES modules evaluate
// their imports in order), so that:
//  - `addEventListener('fetch', ...)` listeners are captured here and called by this adapter: StarlingMonkey's own
//    fetch-event dispatch serves one request per instance only (StarlingMonkey issue #247), this one any number;
//  - `process.env` holds the dyno's environment (config vars), read from wasi:cli/environment while serving.
import { getEnvironment } from 'wasi:cli/environment@@WASI@';
import { Fields, IncomingBody, OutgoingBody, OutgoingResponse, ResponseOutparam } from 'wasi:http/types@@WASI@';

const fetchListeners = [];
let serving = false;
let env = null;

const originalAddEventListener = globalThis.addEventListener;
globalThis.addEventListener = function (type, listener, options) {
  if (type === 'fetch') {
    fetchListeners.push(listener);
  } else if (originalAddEventListener) {
    originalAddEventListener.call(globalThis, type, listener, options);
  }
};

function readEnv() {
  // Top-level code runs at build time, when there is no dyno: it sees an empty environment.
  if (!serving) return {};
  if (env === null) env = Object.freeze(Object.fromEntries(getEnvironment()));
  return env;
}
if (typeof globalThis.process === 'undefined') globalThis.process = {};
if (!('env' in globalThis.process)) Object.defineProperty(globalThis.process, 'env', { get: readEnv, enumerable: true });

const CHUNK = 4096; // blocking-write-and-flush takes at most 4096 bytes
// Hop-by-hop headers: wasi:http refuses them in a response.
const FORBIDDEN = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings', 'te']);
const decoder = new TextDecoder();
const encoder = new TextEncoder();

function readBody(incomingRequest) {
  const body = incomingRequest.consume();
  const stream = body.stream();
  const chunks = [];
  let size = 0;
  for (;;) {
    let chunk;
    try {
      chunk = stream.blockingRead(65536n);
    } catch (e) {
      if (e && ((e.payload && e.payload.tag === 'closed') || e.tag === 'closed')) break;
      throw e;
    }
    if (chunk.length) {
      chunks.push(chunk);
      size += chunk.length;
    }
  }
  stream[Symbol.dispose]();
  IncomingBody.finish(body);
  if (chunks.length === 1) return chunks[0];
  const all = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    all.set(c, offset);
    offset += c.length;
  }
  return all;
}

function toRequest(incomingRequest) {
  const m = incomingRequest.method();
  const method = m.tag === 'other' ? m.val : m.tag.toUpperCase();
  const scheme = incomingRequest.scheme();
  const headers = new Headers();
  const fields = incomingRequest.headers();
  for (const [name, value] of fields.entries()) headers.append(name, decoder.decode(value));
  fields[Symbol.dispose]();
  const init = { method, headers };
  if (method !== 'GET' && method !== 'HEAD') {
    const body = readBody(incomingRequest);
    if (body.length) init.body = body;
  }
  const proto = headers.get('x-forwarded-proto') || (scheme && scheme.tag === 'HTTPS' ? 'https' : 'http');
  const host = headers.get('host') || incomingRequest.authority() || 'localhost';
  return new Request(`${proto}://${host}${incomingRequest.pathWithQuery() || '/'}`, init);
}

// ctx.waitUntil / event.waitUntil: the promises run after the response has been sent, before the instance
// takes its next request.
async function callApp(app, request, waits) {
  const ctx = { waitUntil(p) { waits.push(p); }, passThroughOnException() {} };
  const def = app.default;
  if (def && typeof def.fetch === 'function') return def.fetch(request, process.env, ctx);
  if (typeof def === 'function') return def(request, process.env, ctx);
  if (typeof app.fetch === 'function') return app.fetch(request, process.env, ctx);
  if (fetchListeners.length) {
    let responded = null;
    const event = {
      type: 'fetch',
      request,
      respondWith(r) {
        if (responded) throw new Error('FetchEvent#respondWith called twice');
        responded = Promise.resolve(r);
      },
      waitUntil(p) {
        waits.push(p);
      },
    };
    for (const listener of fetchListeners) {
      if (typeof listener === 'function') listener(event);
      else listener.handleEvent(event);
      if (responded) return responded;
    }
    throw new Error('no fetch listener called event.respondWith()');
  }
  throw new Error('the app has no fetch handler: export default { fetch(request) {...} }, or addEventListener("fetch", ...)');
}

async function writeResponse(response, responseOut) {
  const headerList = [];
  for (const [name, value] of response.headers) {
    if (!FORBIDDEN.has(name)) headerList.push([name, encoder.encode(value)]);
  }
  const outgoing = new OutgoingResponse(Fields.fromList(headerList));
  outgoing.setStatusCode(response.status);
  const body = outgoing.body();
  ResponseOutparam.set(responseOut, { tag: 'ok', val: outgoing });
  const stream = body.write();
  try {
    if (response.body) {
      const reader = response.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const bytes = typeof value === 'string' ? encoder.encode(value) : value;
        for (let off = 0; off < bytes.length; off += CHUNK) {
          stream.blockingWriteAndFlush(bytes.subarray(off, Math.min(off + CHUNK, bytes.length)));
        }
      }
    }
  } finally {
    stream[Symbol.dispose]();
    OutgoingBody.finish(body, undefined);
  }
}

export function serve(app) {
  return {
    async handle(incomingRequest, responseOut) {
      serving = true;
      const waits = [];
      let response;
      try {
        response = await callApp(app, toRequest(incomingRequest), waits);
        if (!(response instanceof Response)) throw new TypeError('the fetch handler did not return a Response');
      } catch (e) {
        console.error(`Error while handling a request: ${e}\n${(e && e.stack) || ''}`);
        response = new Response('Internal Server Error\n', { status: 500, headers: { 'content-type': 'text/plain' } });
      }
      await writeResponse(response, responseOut);
      for (const r of await Promise.allSettled(waits)) {
        if (r.status === 'rejected') console.error(`A promise passed to waitUntil() was rejected: ${r.reason}`);
      }
    },
  };
}
