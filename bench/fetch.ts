// `sm-injector fetch` end to end: process start to file written, for 1, 20 and 100 secrets, against
// moto through the fault proxy with 0 and 20 ms of added round trip, in three modes: the defaults
// (GetSecretValue, 20 in flight), GetSecretValue with 8 in flight (the default before issue 13), and
// --batch-get-secret-value.
// AWS API calls counted.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import { promisify } from "node:util";
import { shippedEntrypoint } from "../scripts/build.mjs";
import { startFaultProxy } from "../test/helpers/fault-proxy.ts";
import { startMoto } from "../test/helpers/moto.ts";
import { CLI } from "../test/helpers/webhook.ts";

const run = promisify(execFile);

export interface FetchMode {
  name: string;
  concurrency: number;
  batch: boolean;
}

export const FETCH_MODES: FetchMode[] = [
  { name: "default (GetSecretValue, 20 in flight)", concurrency: 20, batch: false },
  { name: "GetSecretValue, 8 in flight", concurrency: 8, batch: false },
  { name: "--batch-get-secret-value", concurrency: 20, batch: true },
];

export interface FetchBench {
  mode: string;
  secrets: number;
  rttMs: number;
  medianMs: number;
  apiCalls: number;
}

export async function benchFetch(opts: {
  log: (s: string) => void;
  runs?: number;
}): Promise<{ results: FetchBench[] }> {
  const runs = opts.runs ?? 5;
  const moto = await startMoto();
  const proxy = await startFaultProxy(moto.endpoint);
  const results: FetchBench[] = [];
  // As the image starts it: from the start-up snapshot when dist/ has one this node can use.
  const [node, ...startArgs] = shippedEntrypoint(dirname(CLI));
  try {
    for (let i = 0; i < 100; i++) await moto.createSecret(`erp/bench/service/secret_${i}`, `value-${i}`);
    for (const mode of FETCH_MODES)
      for (const rttMs of [0, 20]) {
        for (const n of [1, 20, 100]) {
          opts.log(`fetch (${mode.name}): ${n} secrets, +${rttMs} ms RTT`);
          const dir = mkdtempSync("/dev/shm/sm-injector-bench-");
          const spec = {
            version: 1,
            format: "shell",
            outputDir: dir,
            fileName: "env",
            fileMode: 0o400,
            timeoutSeconds: 60,
            concurrency: mode.concurrency,
            ...(mode.batch && { batch: true }),
            entries: Array.from({ length: n }, (_, i) => ({
              kind: "value",
              source: { secretId: `erp/bench/service/secret_${i}`, region: "us-east-1" },
              env: `SECRET_${i}`,
            })),
          };
          const samples: number[] = [];
          proxy.delayMs = rttMs;
          proxy.counts.clear();
          for (let r = 0; r < runs; r++) {
            const t0 = process.hrtime.bigint();
            // Asynchronous: the proxy serves from this same process.
            const res = await run(node as string, [...startArgs, "fetch"], {
              env: {
                PATH: process.env.PATH ?? "",
                HOME: dir,
                SM_INJECTOR_SPEC: JSON.stringify(spec),
                AWS_ENDPOINT_URL: proxy.endpoint,
                AWS_ACCESS_KEY_ID: "testing",
                AWS_SECRET_ACCESS_KEY: "testing",
              },
              encoding: "utf8",
            }).catch((e: { stderr?: string }) => {
              throw new Error(`fetch failed: ${e.stderr}`);
            });
            samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
            void res;
          }
          rmSync(dir, { recursive: true, force: true });
          samples.sort((a, b) => a - b);
          const calls = [...proxy.counts.values()].reduce((a, b) => a + b, 0);
          results.push({
            mode: mode.name,
            secrets: n,
            rttMs,
            medianMs: Math.round(samples[Math.floor(runs / 2)] as number),
            apiCalls: calls / runs,
          });
        }
      }
  } finally {
    await proxy.close();
    await moto.stop();
  }
  return { results };
}
