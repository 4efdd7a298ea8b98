// Measures the webhook's slow-client behaviour through the real bundled TLS server (loopback):
//   node --import tsx test/helpers/measure-slow-clients.ts [trickle|idle|bodies N|conns N|all]
// Prints how long the server keeps a trickling body and an idle keep-alive socket, and the webhook's
// RSS with N unfinished 2.5 MB bodies or N connections that sent half a request head.

import type { TLSSocket } from "node:tls";
import { connect, rssMiB, timeUntilClosed, trickle, unfinishedBody } from "./slow-clients.ts";
import { startWebhookProcess } from "./webhook.ts";

const [what = "all", nArg] = process.argv.slice(2);
const wh = await startWebhookProcess({
  args: ["--namespace-policy", "false", ...(process.env.WH_ARGS ? process.env.WH_ARGS.split(" ") : [])],
  ...(process.env.WH_NODE_OPTIONS && { env: { NODE_OPTIONS: process.env.WH_NODE_OPTIONS } }),
});
const target = { port: wh.port, caPem: wh.ca.certPem };
const pid = wh.process.child.pid as number;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cap = Number(process.env.CAP_MS ?? 60_000);
try {
  console.log(`baseline RSS ${rssMiB(pid)} MiB`);
  if (what === "trickle" || what === "all") {
    const s = await connect(target);
    trickle(s, 100_000, 500);
    const r = await timeUntilClosed(s, cap);
    console.log(`trickling body: ${r.closed ? `closed after ${r.ms} ms` : `still open after ${cap} ms`}`);
  }
  if (what === "idle" || what === "all") {
    const s = await connect(target);
    s.write("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    const r = await timeUntilClosed(s, cap);
    console.log(`idle keep-alive: ${r.closed ? `closed after ${r.ms} ms` : `still open after ${cap} ms`}`);
    const s2 = await connect(target);
    const r2 = await timeUntilClosed(s2, cap);
    console.log(
      `connected, nothing sent: ${r2.closed ? `closed after ${r2.ms} ms` : `still open after ${cap} ms`}`,
    );
  }
  if (what === "bodies" || what === "all") {
    const n = Number(nArg ?? 40);
    const socks: TLSSocket[] = [];
    let refused = 0;
    for (let i = 0; i < n; i++) {
      try {
        const s = await connect(target);
        s.on("error", () => {});
        s.on("close", () => refused++);
        socks.push(s);
        await unfinishedBody(s, 2_500_000);
      } catch {
        refused++;
      }
    }
    await sleep(1000);
    console.log(`${n} unfinished 2.5 MB bodies: RSS ${rssMiB(pid)} MiB (${refused} cut off by the server)`);
    for (const s of socks) s.destroy();
    await sleep(1000);
  }
  if (what === "conns" || what === "all") {
    const n = Number(nArg ?? 2000);
    const socks: TLSSocket[] = [];
    let failed = 0;
    for (let i = 0; i < n; i++) {
      try {
        const s = await connect(target);
        s.on("error", () => {});
        s.write("POST /mutate HTTP/1.1\r\nHost: local");
        socks.push(s);
      } catch {
        failed++;
      }
    }
    await sleep(1000);
    const open = socks.filter((s) => !s.destroyed).length;
    console.log(`${n} slow connections: RSS ${rssMiB(pid)} MiB (${open} open, ${failed} refused)`);
    const t0 = performance.now();
    const res = await wh.get("/healthz").catch((e: Error) => ({ status: 0, body: e.message }));
    console.log(`  /healthz during it: ${res.status} in ${Math.round(performance.now() - t0)} ms`);
    for (const s of socks) s.destroy();
  }
  if (what === "worst") {
    // Everything a client can hold at once within the limits: the body budget filled with large
    // (2.5 MB) and small (250 KB) unfinished bodies, and the rest of the connections sending a head
    // slowly. Then: is a legitimate review still answered, and what is the RSS?
    const socks: TLSSocket[] = [];
    const open = async () => {
      const s = await connect(target);
      s.on("error", () => {});
      socks.push(s);
      return s;
    };
    for (let i = 0; i < 8; i++) await unfinishedBody(await open(), 2_500_000);
    for (let i = 0; i < 70; i++) await unfinishedBody(await open(), 250_000);
    for (let i = 0; i < Number(nArg ?? 420); i++) {
      const s = await open().catch(() => undefined);
      s?.write("POST /mutate HTTP/1.1\r\nHost: local");
    }
    await sleep(500);
    const live = socks.filter((s) => !s.destroyed).length;
    const res = await wh.get("/healthz").catch((e: Error) => ({ status: 0, body: e.message }));
    console.log(`worst case: RSS ${rssMiB(pid)} MiB with ${live} connections held; /healthz ${res.status}`);
    for (const s of socks) s.destroy();
  }
  if (what === "parse") {
    // Complete 2.5 MB bodies that parse into ~1.2M empty objects each, posted by `n` clients at once
    // for 10 s: the peak RSS while the webhook parses and reviews them.
    const n = Number(nArg ?? 20);
    // PARSE_SHAPE: objects (830k `{}`), under-cap (99,990 `{}` and a 2.2 MB string), string (one 2.5 MB annotation)
    const shape = process.env.PARSE_SHAPE ?? "objects";
    const filler =
      shape === "objects"
        ? `"x":[${"{},".repeat(830_000)}{}]`
        : shape === "under-cap"
          ? `"x":[${"{},".repeat(99_990)}{}],"y":"${"y".repeat(2_200_000)}"`
          : `"x":"${"x".repeat(2_500_000)}"`;
    const annotations =
      shape === "string" ? `,"annotations":{"sm-injector.io/env.A":"erp/a/b#${"k".repeat(2_400_000)}"}` : "";
    const body = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"erp","object":{"metadata":{"labels":{"sm-injector.io/inject":"true"}${annotations}},"spec":{"containers":[{"name":"c"}],${shape === "string" ? '"z":1' : filler}}}}}`;
    let peak = 0;
    let answered = 0;
    let refused = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssMiB(pid));
    }, 50);
    const until = Date.now() + 10_000;
    await Promise.all(
      Array.from({ length: n }, async () => {
        while (Date.now() < until) {
          const r = await wh.post("/mutate", body).catch(() => ({ status: 0 }));
          if (r.status === 503) refused++;
          else answered++;
        }
      }),
    );
    clearInterval(sampler);
    console.log(
      `${n} clients posting ${(body.length / 1e6).toFixed(1)} MB bodies (${shape}) for 10 s: peak RSS ${peak} MiB (${answered} answered, ${refused} refused with 503)`,
    );
  }
} finally {
  await wh.stop();
}
