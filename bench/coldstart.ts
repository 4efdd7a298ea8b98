// Cold start of the bundled CLI: process start to exit for `--version`, and to "spec refused" for
// `fetch` (the part of every pod start that is ours before the first AWS call).
import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { CLI } from "../test/helpers/webhook.ts";

export interface ColdStart {
  command: string;
  runs: number;
  medianMs: number;
  minMs: number;
}

function time(args: string[], env: NodeJS.ProcessEnv, runs: number): ColdStart {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    spawnSync(process.execPath, [CLI, ...args], { env, stdio: "ignore" });
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  samples.sort((a, b) => a - b);
  return {
    command: `sm-injector ${args.join(" ")}`,
    runs,
    medianMs: Math.round((samples[Math.floor(runs / 2)] as number) * 10) / 10,
    minMs: Math.round((samples[0] as number) * 10) / 10,
  };
}

export function benchColdStart(runs = 15): {
  results: ColdStart[];
  bundleKiB: number;
  nodeBaselineMs: number;
} {
  const env = { PATH: process.env.PATH ?? "" };
  const node = time(["--version"], env, 1); // warm the page cache
  void node;
  const baseline: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    spawnSync(process.execPath, ["-e", "0"], { stdio: "ignore" });
    baseline.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  baseline.sort((a, b) => a - b);
  return {
    results: [
      time(["--version"], env, runs),
      // An invalid spec makes fetch load its modules, parse, and exit 2 without touching AWS.
      time(["fetch"], { ...env, SM_INJECTOR_SPEC: "{}" }, runs),
      time(["webhook", "--help"], env, runs),
    ],
    bundleKiB: Math.round(statSync(CLI).size / 1024),
    nodeBaselineMs: Math.round((baseline[Math.floor(runs / 2)] as number) * 10) / 10,
  };
}
