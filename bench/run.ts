// `npm run bench`: measures the webhook under load, `fetch` end to end against moto, and the CLI's
// cold start; writes bench/results/latest.json and latest.md and prints the table.
// BENCH_SECONDS (default 10) sets the length of each load run.
import { mkdir, writeFile } from "node:fs/promises";
import { cpus } from "node:os";
import { join } from "node:path";
import { refuseUnpinnedNode } from "../scripts/pinned-node.mjs";
import { benchColdStart } from "./coldstart.ts";
import { benchFetch } from "./fetch.ts";
import { benchHostile, TARGET_CPU_MS, TARGET_EXTRA_RSS_MIB } from "./hostile.ts";
import { benchImages, imagesTable } from "./images.ts";
import { benchFetchPeers, peersTable } from "./peers.ts";
import { benchWebhookPeers, webhookPeersTable } from "./vault-k8s.ts";
import { benchWebhook } from "./webhook.ts";

// The numbers are claims about the image's runtime: measure on the pinned Node only.
const refusal = refuseUnpinnedNode("The benchmark");
if (refusal) {
  process.stderr.write(`${refusal}\n`);
  process.exit(1);
}

const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);
const started = Date.now();

// `npm run bench -- --peers`: only the side-by-side run with the Go peers (bench/peers.ts).
if (process.argv.includes("--peers")) {
  const rounds = 5;
  const peers = await benchFetchPeers({ log, rounds });
  const webhookPeers = await benchWebhookPeers({ log, rounds, seconds: Math.min(seconds, 5) });
  const table = `${webhookPeersTable(webhookPeers)}\n\n${peersTable(peers, rounds)}`;
  const dir = join(import.meta.dirname, "results");
  await mkdir(dir, { recursive: true });
  const meta = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
  };
  await writeFile(
    join(dir, "peers.json"),
    `${JSON.stringify({ ...meta, webhook: webhookPeers, fetch: peers }, null, 2)}\n`,
  );
  await writeFile(join(dir, "peers.md"), `${table}\n`);
  process.stdout.write(
    `${table}\n\n(${Math.round((Date.now() - started) / 1000)} s; written to bench/results/peers.{json,md})\n`,
  );
  process.exit(0);
}

const webhook = await benchWebhook({ seconds, log });
const hostile = await benchHostile({ log });
const fetch = await benchFetch({ log });
log("cold start");
const cold = benchColdStart();
const images = benchImages({ log });

const result = {
  date: new Date().toISOString(),
  machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
  webhook,
  hostile,
  fetch,
  coldStart: cold,
  images,
  totalSeconds: Math.round((Date.now() - started) / 1000),
};

const md: string[] = [];
md.push(
  `Measured ${result.date.slice(0, 10)} on ${result.machine.cpus} × ${result.machine.cpu}, Node ${result.machine.node} (\`npm run bench\`).`,
  "",
);
const where = webhook.pinned
  ? `its own process pinned to one core (CPU ${webhook.pinned.webhookCpu}; the load generator on CPU ${webhook.pinned.generatorCpu})`
  : "its own process (not pinned: no taskset or a single CPU)";
md.push(
  `**Webhook** (${where}, TLS on loopback, default log level so each admission writes its audit line; a pod with 3 containers and 10 secret references):`,
  "",
);
md.push(
  "| Load | Connections | Requests/s | p50 ms | p99 ms | p99.9 ms | Errors | Webhook CPU ms/request | Other load on the machine |",
  "|---|---|---|---|---|---|---|---|---|",
);
for (const r of webhook.results) {
  const conns = r.targetRate === undefined ? `${r.connections}` : `open loop (≤${r.connections} in flight)`;
  md.push(
    `| ${r.scenario} | ${conns} | ${r.requestsPerSecond} | ${r.p50Ms} | ${r.p99Ms} | ${r.p999Ms} | ${r.errors + r.non2xx} | ${r.webhookCpuMsPerRequest} | ${r.otherLoadPercent}% |`,
  );
}
const f = webhook.fixedRate;
const judged = f.byClient[0];
const lags = (client: string) =>
  webhook.results
    .filter((r) => r.client === client)
    .map((r) => r.sendLagP99Ms)
    .join(", ");
md.push(
  "",
  ...(judged
    ? [
        `Target (issue 7): p99 under ${f.targetP99Ms} ms at ${f.rate} admissions/s with zero errors — median p99 of ${judged.p99Ms.length} runs with the ${judged.client} client: ${judged.medianP99Ms} ms, ${judged.errors} errors: **${judged.met ? "met" : "not met"}**.`,
      ]
    : []),
  ...f.byClient.map(
    (c) =>
      `- ${c.client} client: p99 per run ${c.p99Ms.join(", ")} ms (median ${c.medianP99Ms}); the generator's own send lag, p99 per run: ${lags(c.client)} ms.`,
  ),
  "",
  `Fixed rate: a request is due every ${1000 / f.rate} ms whatever the webhook does, and latency counts from when it was due (bench/open-loop.ts). The polling client has a core to itself and polls its event loop, so it sends on time and reads each response as it arrives; the sleeping client waits on timers (1 ms resolution) and its idle CPU must wake up for each response, which it counts as latency too. "Other load" is CPU used by other processes during the run, in % of both cores.`,
  "",
  `Webhook RSS: ${Math.round(webhook.rssBeforeKiB / 1024)} MiB before load, ${Math.round(webhook.rssAfterKiB / 1024)} MiB after.`,
  "",
);
md.push(
  "**Hostile pods** (issue 11: each sent once to the bundled webhook, a normal opted-in pod 5 ms behind it; CPU is the webhook's for both, extra RSS its peak above the level before):",
  "",
  "| Input | Body | Answer | Answer bytes | Webhook CPU ms | Extra peak RSS MiB | Normal pod waited ms | Target |",
  "|---|---|---|---|---|---|---|---|",
);
for (const h of hostile)
  md.push(
    `| ${h.scenario} | ${Math.round(h.bodyBytes / 1024)} KiB | ${h.answer} | ${h.answerBytes} | ${h.webhookCpuMs} | ${h.extraPeakRssMiB} | ${h.normalPodMs} (${h.normalPodAnswer}) | ${h.met ? "met" : "**not met**"} |`,
  );
md.push(
  "",
  `Target (issue 11): under ${TARGET_CPU_MS} ms of webhook CPU and ${TARGET_EXTRA_RSS_MIB} MiB of extra RSS for any AdmissionReview up to the body limit, and the normal pod answered.`,
  "",
);
md.push("**`sm-injector fetch`** (process start to file written, against moto through a delay proxy):", "");
md.push("| Mode | Secrets | Added RTT | Median ms | AWS API calls |", "|---|---|---|---|---|");
for (const r of fetch.results)
  md.push(`| ${r.mode} | ${r.secrets} | ${r.rttMs} ms | ${r.medianMs} | ${r.apiCalls} |`);
// Issue 7: 20 secrets at 20 ms RTT cost less than 2 round trips (40 ms) more than 1 secret. The
// same difference at 0 ms RTT is the per-call CPU (the SDK here, moto's single Python process there):
// subtracting it leaves what the round trips add.
const at = (mode: string, n: number, rtt: number) =>
  fetch.results.find((r) => r.mode === mode && r.secrets === n && r.rttMs === rtt)?.medianMs ?? Number.NaN;
const fetchTarget = [...new Set(fetch.results.map((r) => r.mode))].map((m) => {
  const added = at(m, 20, 20) - at(m, 1, 20);
  const fromRtt = added - (at(m, 20, 0) - at(m, 1, 0));
  return `${m}: ${added >= 0 ? "+" : ""}${added} ms (${added < 40 ? "met" : "not met"}; of which ${fromRtt} ms from round trips)`;
});
md.push(
  "",
  `Target (issue 7): 20 secrets at +20 ms RTT under 40 ms (2 round trips) more than 1 secret — ${fetchTarget.join("; ")}. Without batching, 20 calls cost per-call CPU (the AWS SDK's signing here, moto's single Python process there) even at 0 ms RTT; the round trips themselves overlap.`,
);
md.push(
  "",
  `**Cold start** (entry file ${cold.bundleKiB} KiB; \`node -e 0\` alone: ${cold.nodeBaselineMs} ms):`,
  "",
);
md.push("| Command | Median ms | Min ms |", "|---|---|---|");
for (const r of cold.results) md.push(`| \`${r.command}\` | ${r.medianMs} | ${r.minMs} |`);
md.push("", ...imagesTable(images));
const table = md.join("\n");

const dir = join(import.meta.dirname, "results");
await mkdir(dir, { recursive: true });
await writeFile(join(dir, "latest.json"), `${JSON.stringify(result, null, 2)}\n`);
await writeFile(join(dir, "latest.md"), `${table}\n`);
process.stdout.write(`${table}\n\n(${result.totalSeconds} s; written to bench/results/latest.{json,md})\n`);
