// The serving certificate, its key and the client CA: read and checked at start-up (every problem
// named with its flag), then re-read on a timer (and SIGHUP) and swapped in only when the new set is
// usable, so a half-rotated pair keeps the old one serving.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { Server as HttpsServer } from "node:https";
import { createSecureContext } from "node:tls";
import type { Logger } from "pino";
import type { WebhookMetrics } from "./metrics.ts";

export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
}

/** Where the files are, each with the flag (and variable) that named it, for the messages. */
export interface TlsPaths {
  cert: { flag: string; path: string };
  key: { flag: string; path: string };
  ca?: { flag: string; path: string } | undefined;
}

/** Reads the certificate files; one error naming every file that cannot be read, and its flag. */
export async function readTlsFiles(paths: TlsPaths): Promise<TlsFiles> {
  const wanted = [paths.cert, paths.key, paths.ca];
  const read = await Promise.allSettled(wanted.map((w) => (w ? readFile(w.path) : undefined)));
  const problems = read.flatMap((r, i) => {
    if (r.status === "fulfilled") return [];
    const { flag, path } = wanted[i] as { flag: string; path: string };
    const code = (r.reason as NodeJS.ErrnoException)?.code ?? "error";
    return [`cannot read ${flag} ${path} (${code}: ${(r.reason as Error)?.message ?? r.reason})`];
  });
  if (problems.length > 0) throw new Error(problems.join("; "));
  const [cert, key, ca] = read.map((r) => (r.status === "fulfilled" ? r.value : undefined));
  return { cert: cert as Buffer, key: key as Buffer, ...(ca && { ca }) };
}

/** Throws a message naming the files and their flags when they do not form a usable TLS configuration. */
export function checkTlsFiles(paths: TlsPaths, files: TlsFiles): void {
  try {
    createSecureContext({ cert: files.cert, key: files.key });
  } catch (e) {
    throw new Error(
      `the TLS certificate (${paths.cert.flag} ${paths.cert.path}) and key (${paths.key.flag} ${paths.key.path}) do not form a usable pair: ${(e as Error).message}`,
    );
  }
  if (files.ca) {
    const pem = files.ca.toString("latin1");
    try {
      if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new Error("no PEM certificate in it");
      createSecureContext({ ca: files.ca });
    } catch (e) {
      throw new Error(
        `the client CA file (${paths.ca?.flag} ${paths.ca?.path}) is not a PEM CA certificate: ${(e as Error).message}`,
      );
    }
  }
}

/** Reads and checks the files: what start-up needs before serving. */
export async function loadTls(paths: TlsPaths): Promise<TlsFiles> {
  const files = await readTlsFiles(paths);
  checkTlsFiles(paths, files);
  return files;
}

function digest(files: TlsFiles): string {
  const h = createHash("sha256");
  for (const p of [files.cert, files.key, files.ca ?? Buffer.alloc(0)]) h.update(p);
  return h.digest("hex");
}

/**
 * A reload function for a running server: re-reads the files and swaps them in when they changed
 * and are usable; returns whether it swapped. Never throws (a failure is logged and counted).
 */
export function tlsReloader(
  server: HttpsServer,
  paths: TlsPaths,
  initial: TlsFiles,
  log: Logger,
  metrics: WebhookMetrics,
): () => Promise<boolean> {
  let current = digest(initial);
  return async () => {
    try {
      const next = await readTlsFiles(paths);
      const d = digest(next);
      if (d === current) return false;
      // Validate before swapping: a half-rotated pair (new cert, old key) keeps the old one serving.
      checkTlsFiles(paths, next);
      server.setSecureContext({ ...next, minVersion: "TLSv1.2" });
      current = d;
      metrics.tlsReloads.inc({ result: "ok" });
      log.info({ certFile: paths.cert.path, clientCaFile: paths.ca?.path }, "reloaded TLS certificate");
      return true;
    } catch (e) {
      metrics.tlsReloads.inc({ result: "error" });
      log.warn(
        { err: { message: (e as Error).message } },
        "TLS certificate files changed but could not be loaded; still serving the previous certificate",
      );
      return false;
    }
  };
}
