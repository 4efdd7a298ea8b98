// A constant-arrival-rate load generator: request i is due at start + i/rate whatever happened to
// the ones before it, as pods arrive at an API server. Latency is counted from the moment a request
// was due (not from when it could be sent), so a stalled server or a busy connection pool shows up
// in full ("coordinated omission" corrected), and so does this generator's own timer lag.
//
// Why not autocannon's `overallRate`: it caps each connection at rate/connections requests per
// second, so every connection fires its whole quota back to back at the start of each second and
// then idles — 1,000/s over 16 connections arrives as ~6,000/s for 150 ms, i.e. a closed loop of 16.
import tls from "node:tls";

export interface OpenLoopResult {
  targetRate: number;
  requests: number;
  /** Completed requests per second of the measured window. */
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  errors: number;
  non2xx: number;
  /** How late this generator itself sent requests (its timer lag), p99: part of every latency above. */
  sendLagP99Ms: number;
  /** p99 of the latency counted from when each request was sent rather than due (without the lag). */
  p99FromSendMs: number;
  /** Most requests in flight at once (sent or waiting for a connection). */
  maxInFlight: number;
}

/**
 * The body of the HTTP/1.1 response whose head ends at `start` in `buf` and where the response
 * ends, undefined while more bytes are due, or "invalid" when it is neither Content-Length nor
 * chunked. Go's net/http (vault-k8s) sends bodies over 2 KiB chunked; Node's with a length.
 */
export function responseBody(
  buf: Buffer,
  start: number,
  head: string,
): { body: Buffer; end: number } | undefined | "invalid" {
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (length) {
    const end = start + Number(length[1]);
    return buf.length < end ? undefined : { body: buf.subarray(start, end), end };
  }
  if (!/\r\ntransfer-encoding:\s*chunked/i.test(head)) return "invalid";
  const parts: Buffer[] = [];
  let at = start;
  for (;;) {
    const lineEnd = buf.indexOf("\r\n", at);
    if (lineEnd === -1) return undefined;
    const size = Number.parseInt(buf.subarray(at, lineEnd).toString("latin1"), 16);
    if (!Number.isFinite(size) || size < 0) return "invalid";
    if (size === 0) {
      // No trailers from the servers measured here: the last chunk is followed by an empty line.
      const end = lineEnd + 4;
      return buf.length < end ? undefined : { body: Buffer.concat(parts), end };
    }
    const dataEnd = lineEnd + 2 + size;
    if (buf.length < dataEnd + 2) return undefined;
    parts.push(buf.subarray(lineEnd + 2, dataEnd));
    at = dataEnd + 2;
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

const round2 = (n: number) => Math.round(n * 100) / 100;

/**
 * POSTs `body` to `url` at `rate` requests/s for `seconds` over keep-alive TLS connections (at most
 * `maxConnections`; a request waits for a free one, and that wait counts). The first `warmupSeconds`
 * run at the same rate and are not counted.
 */
export async function openLoop(opts: {
  url: string;
  ca: string;
  body: string;
  rate: number;
  seconds: number;
  warmupSeconds?: number;
  maxConnections?: number;
  timeoutMs?: number;
  /** A 2xx response counts as an error unless it contains this. */
  expect?: string;
  /**
   * Poll the event loop (setImmediate) between sends instead of sleeping on a timer: requests go out
   * on time (libuv timers have 1 ms resolution) and responses are read as they arrive rather than
   * after this process's idle CPU wakes up again. A more exact instrument for a busy core; only for
   * a process that has a core to itself.
   */
  poll?: boolean;
}): Promise<OpenLoopResult> {
  const warmup = Math.round((opts.warmupSeconds ?? 1) * opts.rate);
  const measured = Math.round(opts.seconds * opts.rate);
  const total = warmup + measured;
  const interval = 1000 / opts.rate;
  const maxConnections = opts.maxConnections ?? 64;
  const url = new URL(opts.url);
  const payload = Buffer.from(opts.body);
  // One pre-built request; a minimal HTTP/1.1 client over raw TLS sockets keeps this generator's own
  // CPU per request (and so its timer lag) low: node:https costs ~3× more.
  const request = Buffer.concat([
    Buffer.from(
      `POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nContent-Length: ${payload.length}\r\nConnection: keep-alive\r\n\r\n`,
    ),
    payload,
  ]);
  const expect = opts.expect === undefined ? undefined : Buffer.from(opts.expect);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const latencies = new Float64Array(measured);
  const lags = new Float64Array(measured);
  let done = 0;
  let errors = 0;
  let non2xx = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  let firstMeasuredAt = 0;
  let lastDoneAt = 0;
  let connections = 0;

  interface Conn {
    socket: tls.TLSSocket;
    buf: Buffer;
    connected: boolean;
    dead: boolean;
    timer?: NodeJS.Timeout;
    current?: { i: number; due: number };
  }
  const idle: Conn[] = [];
  const queue: { i: number; due: number }[] = [];
  let resolveAll: () => void = () => {};
  const allDone = new Promise<void>((r) => {
    resolveAll = r;
  });

  const finish = (i: number, due: number, ok: boolean, status: number) => {
    const now = performance.now();
    inFlight--;
    if (i >= warmup) {
      latencies[i - warmup] = now - due;
      if (!ok) errors++;
      else if (status < 200 || status >= 300) non2xx++;
      lastDoneAt = now;
    }
    if (++done === total) resolveAll();
  };
  const release = (c: Conn) => {
    const next = queue.shift();
    if (next) start(c, next);
    else idle.push(c);
  };
  const fail = (c: Conn) => {
    if (c.dead) return;
    c.dead = true;
    c.socket.destroy();
    clearTimeout(c.timer);
    const k = idle.indexOf(c);
    if (k !== -1) idle.splice(k, 1);
    connections--;
    // A connection that never came up takes one waiting request down with it, so a dead server
    // ends the run with errors instead of retrying for ever.
    const cur = c.current ?? (c.connected ? undefined : queue.shift());
    c.current = undefined;
    if (cur) finish(cur.i, cur.due, false, 0);
    if (queue.length > 0 && connections < maxConnections) connect();
  };
  const onData = (c: Conn, chunk: Buffer) => {
    c.buf = c.buf.length === 0 ? chunk : Buffer.concat([c.buf, chunk]);
    const headEnd = c.buf.indexOf("\r\n\r\n");
    if (headEnd === -1 || !c.current) return;
    const head = c.buf.subarray(0, headEnd).toString("latin1");
    const status = Number(head.slice(9, 12));
    const framed = responseBody(c.buf, headEnd + 4, head);
    if (framed === "invalid") return fail(c); // close-delimited or malformed: not a keep-alive answer
    if (framed === undefined) return;
    const { body, end } = framed;
    const ok = expect === undefined || status < 200 || status >= 300 || body.includes(expect);
    c.buf = c.buf.subarray(end);
    const cur = c.current;
    c.current = undefined;
    clearTimeout(c.timer);
    finish(cur.i, cur.due, ok, status);
    release(c);
  };
  const connect = () => {
    connections++;
    const socket = tls.connect({ host: url.hostname, port: Number(url.port), ca: opts.ca, servername: "" });
    socket.setNoDelay(true);
    const c: Conn = { socket, buf: Buffer.alloc(0), connected: false, dead: false };
    socket.on("secureConnect", () => {
      c.connected = true;
      release(c);
    });
    socket.on("data", (d: Buffer) => onData(c, d));
    socket.on("error", () => fail(c));
    socket.on("close", () => fail(c));
  };
  const start = (c: Conn, r: { i: number; due: number }) => {
    c.current = r;
    c.timer = setTimeout(() => fail(c), timeoutMs);
    c.socket.write(request);
  };
  const send = (i: number, due: number) => {
    if (i === warmup) firstMeasuredAt = due;
    if (i >= warmup) lags[i - warmup] = performance.now() - due;
    if (++inFlight > maxInFlight && i >= warmup) maxInFlight = inFlight;
    const c = idle.pop();
    if (c) start(c, { i, due });
    else {
      queue.push({ i, due });
      if (connections < maxConnections) connect();
    }
  };

  const t0 = performance.now() + 20;
  let sent = 0;
  const tick = () => {
    const now = performance.now();
    while (sent < total && t0 + sent * interval <= now) {
      send(sent, t0 + sent * interval);
      sent++;
    }
    if (sent >= total) return;
    const wait = t0 + sent * interval - performance.now();
    if (opts.poll && wait < 2) setImmediate(tick);
    else setTimeout(tick, Math.max(0, opts.poll ? wait - 1 : wait));
  };
  setTimeout(tick, 20);
  await allDone;
  for (const c of idle) c.socket.destroy();

  const fromSend = latencies.map((l, i) => l - (lags[i] as number));
  latencies.sort();
  lags.sort();
  fromSend.sort();
  const windowMs = lastDoneAt - firstMeasuredAt;
  return {
    targetRate: opts.rate,
    requests: measured,
    requestsPerSecond: Math.round((measured / windowMs) * 1000),
    p50Ms: round2(percentile(latencies, 50)),
    p99Ms: round2(percentile(latencies, 99)),
    p999Ms: round2(percentile(latencies, 99.9)),
    maxMs: round2(latencies[latencies.length - 1] ?? Number.NaN),
    errors,
    non2xx,
    sendLagP99Ms: round2(percentile(lags, 99)),
    p99FromSendMs: round2(percentile(fromSend, 99)),
    maxInFlight,
  };
}
