// Hostile HTTP clients for the webhook's slow-client limits: bodies that trickle, connections that
// stay idle or never read, many unfinished large bodies. Loopback only, bounded counts and durations.
import { readFileSync } from "node:fs";
import tls, { type TLSSocket } from "node:tls";

export interface Target {
  port: number;
  caPem: string;
  host?: string;
}

/** A TLS connection to the webhook; resolves once the handshake is done. */
export function connect(t: Target, extra: tls.ConnectionOptions = {}): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: t.host ?? "127.0.0.1",
      port: t.port,
      ca: t.caPem,
      servername: "localhost",
      ...extra,
    });
    s.once("secureConnect", () => resolve(s));
    s.once("error", reject);
  });
}

/** Resolves with the milliseconds until the server closed the socket (or `capMs` if it did not). */
export function timeUntilClosed(s: TLSSocket, capMs: number): Promise<{ ms: number; closed: boolean }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ ms: capMs, closed: false });
    }, capMs);
    const done = () => {
      clearTimeout(timer);
      resolve({ ms: Math.round(performance.now() - t0), closed: true });
    };
    s.once("close", done);
    s.on("error", () => {});
    s.resume();
  });
}

export function postHead(path: string, contentLength: number): string {
  return `POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${contentLength}\r\n\r\n`;
}

/** Sends the head of a POST with a large Content-Length, then one byte every `everyMs`. */
export function trickle(s: TLSSocket, contentLength: number, everyMs: number): () => void {
  s.write(postHead("/mutate", contentLength));
  s.write("{");
  const timer = setInterval(() => {
    if (!s.destroyed) s.write(" ");
  }, everyMs);
  s.once("close", () => clearInterval(timer));
  return () => clearInterval(timer);
}

/** Sends all of a `size`-byte body but its last byte, so the server holds it waiting for the end. */
export async function unfinishedBody(s: TLSSocket, size: number): Promise<void> {
  s.write(postHead("/mutate", size));
  const body = Buffer.alloc(size - 1, 0x20);
  body[0] = 0x7b; // "{"
  await new Promise<void>((resolve) => {
    if (s.write(body)) resolve();
    else s.once("drain", () => resolve());
    s.once("close", () => resolve());
  });
}

/** Resident set size of a process, in MiB (Linux). */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Math.round(Number(m[1]) / 1024) : Number.NaN;
}
