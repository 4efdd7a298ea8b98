#!/usr/bin/env node
// Interleaved A/B of `sm-injector fetch`'s cold start (an invalid spec: the bundle is loaded and the
// spec parsed, then exit 2, as in bench/coldstart.ts) under several node binaries, each without and
// with Node's module compile cache (a cache made by one such run, then used as is). Wall time from
// spawn to exit and the child's CPU time (all its threads), medians. For a runtime change:
//
//   node bench/cold-start-ab.mjs [RUNS] NODE...     (after npm run build; any Node runs this script)
//
// Plain JavaScript, no dependency: it runs under the old Node as well as the new one.
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const args = process.argv.slice(2);
const runs = /^\d+$/.test(args[0] ?? "") ? Number(args.shift()) : 30;
const nodes = args.length ? args : [process.execPath];
const dist = path.join(import.meta.dirname, "..", "dist");
const app = mkdtempSync(path.join(tmpdir(), "sm-injector-cold-"));
cpSync(dist, app, { recursive: true });
const cli = path.join(app, "sm-injector.mjs");
const PROBE =
  'data:text/javascript,process.on("exit",()=>{const u=process.cpuUsage();process.stderr.write("CPU_MS="+(u.user+u.system)/1000+"\\n")})';
const base = { PATH: process.env.PATH ?? "", SM_INJECTOR_SPEC: "{}" };

const cases = [];
for (const [i, node] of nodes.entries()) {
  const version = spawnSync(node, ["--version"], { encoding: "utf8" }).stdout.trim();
  cases.push({ name: `${version} no cache`, node, env: base });
  // The module compile cache came with Node 22.1; older ones ignore NODE_COMPILE_CACHE.
  const hasCache = spawnSync(node, ["-p", "typeof require('node:module').enableCompileCache"], {
    encoding: "utf8",
  }).stdout.trim();
  if (hasCache !== "function") continue;
  const cache = path.join(app, `.compile-cache-${i}`);
  const withCache = { ...base, NODE_COMPILE_CACHE: cache };
  const made = spawnSync(node, [cli, "fetch"], { env: withCache, stdio: "ignore" });
  if (made.status !== 2) throw new Error(`${node}: fetch exited ${made.status} while making the cache`);
  cases.push({ name: `${version} compile cache`, node, env: withCache });
}
const wall = new Map(cases.map((c) => [c.name, []]));
const cpu = new Map(cases.map((c) => [c.name, []]));
for (let i = 0; i < runs + 2; i++)
  for (const c of cases) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(c.node, ["--import", PROBE, cli, "fetch"], { env: c.env, encoding: "utf8" });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.status !== 2) throw new Error(`${c.name}: exit ${r.status}: ${r.stderr}`);
    if (i < 2) continue; // warm-up rounds
    wall.get(c.name).push(ms);
    cpu.get(c.name).push(Number(/CPU_MS=([\d.]+)/.exec(r.stderr)?.[1]));
  }
rmSync(app, { recursive: true, force: true });
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
console.log(`\`sm-injector fetch\` cold start, ${runs} interleaved runs each (medians):\n`);
console.log("| Node | Wall ms | CPU ms |\n|---|---|---|");
for (const c of cases)
  console.log(
    `| ${c.name} | ${median(wall.get(c.name)).toFixed(1)} | ${median(cpu.get(c.name)).toFixed(1)} |`,
  );
