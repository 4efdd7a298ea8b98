// `npm run bench -- --peers`: the init container side by side with a Go peer built from its pinned
// source (scripts/build-peers.sh, cached): process start to secret delivered, 1 secret at 0 ms RTT,
// against the same moto, each process pinned to the same core, in alternating rounds.
//
// - sm-injector fetch as the image starts it (shippedEntrypoint: from the start-up snapshot when
//   dist/ has a usable one) and, for reference, a plain start of the same bundle;
// - bank-vaults' secret-init (aws-sdk-go-v2, honours AWS_ENDPOINT_URL): it resolves the env
//   variables holding a secret's ARN, then execs the app (here `true`).
//
// - two floors, so that the runtime's share of the ratio is measured in the same run: Node.js
//   starting and exiting (`node -e 0`), and bench/node-floor-fetch.cjs, the least a Node.js init
//   container can do (one unsigned request to moto with node:http, the value written to a file).
//
// doitintl/secrets-init is built too, but not run: its aws-sdk-go v1 has no endpoint setting (no
// AWS_ENDPOINT_URL, no flag), so reaching moto would take a TLS-intercepting proxy.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { shippedEntrypoint } from "../scripts/build.mjs";
import { startMoto, TEST_CREDENTIALS } from "../test/helpers/moto.ts";
import { REPO_ROOT, requireBundle } from "../test/helpers/webhook.ts";

export interface PeerRun {
  name: string;
  command: string;
  medianMs: number;
  minMs: number;
  /** Median of each round's median: the rounds alternate, so a busy moment hits every contender. */
  roundMediansMs: number[];
  /** medianMs over the Go peer's. */
  ratioToGo?: number;
}

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const round1 = (n: number) => Math.round(n * 10) / 10;

/** Builds (or finds cached) the Go peers; throws with the build's own explanation when it fails. */
export function buildPeers(log: (s: string) => void): string {
  log("peers: scripts/build-peers.sh (cached after the first build)");
  const r = spawnSync("bash", [join(REPO_ROOT, "scripts", "build-peers.sh")], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (r.status !== 0)
    throw new Error(
      `the Go peers could not be built (scripts/build-peers.sh exited ${r.status}):\n${r.stderr.split("\n").slice(-15).join("\n")}`,
    );
  return r.stdout.trim().split("\n").pop() as string;
}

/** The core every contender runs on: the last one, like the webhook bench's. */
function pinPrefix(): string[] {
  const n = cpus().length;
  try {
    execFileSync("taskset", ["-V"], { stdio: "ignore" });
  } catch {
    return [];
  }
  return n >= 2 ? ["taskset", "-c", String(n - 1)] : [];
}

export async function benchFetchPeers(opts: {
  log: (s: string) => void;
  rounds?: number;
  runsPerRound?: number;
}): Promise<{ results: PeerRun[]; pinnedCpu: string | undefined; ratio: number }> {
  const bin = buildPeers(opts.log);
  requireBundle();
  const rounds = opts.rounds ?? 5;
  const perRound = opts.runsPerRound ?? 5;
  const moto = await startMoto();
  // Memory-backed like the pod's volume; one directory per contender, each checked at the end.
  const outputRoot = mkdtempSync("/dev/shm/sm-injector-bench-peers-");
  try {
    const name = "erp/bench/service/secret_0";
    const { arn } = await moto.createSecret(name, "value-0");
    const base = {
      PATH: process.env.PATH ?? "",
      HOME: "/nonexistent",
      AWS_CONFIG_FILE: "/nonexistent/config",
      AWS_SHARED_CREDENTIALS_FILE: "/nonexistent/credentials",
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_REGION: "us-east-1",
      AWS_ENDPOINT_URL: moto.endpoint,
      ...TEST_CREDENTIALS,
    };
    const ours = (dir: string) => ({
      ...base,
      SM_INJECTOR_SPEC: JSON.stringify({
        version: 1,
        format: "shell",
        outputDir: dir,
        fileName: "env",
        fileMode: 0o400,
        timeoutSeconds: 30,
        entries: [{ kind: "value", source: { secretId: name, region: "us-east-1" }, env: "SECRET_0" }],
      }),
    });
    const dist = join(REPO_ROOT, "dist");
    const shipped = shippedEntrypoint(dist);
    const contenders = [
      {
        name: `sm-injector fetch (as shipped: ${shipped.includes("--snapshot-blob") ? "start-up snapshot" : "plain start, no usable snapshot"})`,
        argv: [...shipped, "fetch"],
        env: ours,
      },
      {
        name: "sm-injector fetch (plain start)",
        argv: [process.execPath, join(dist, "sm-injector.mjs"), "fetch"],
        env: ours,
      },
      {
        name: "bank-vaults secret-init (Go)",
        argv: [join(bin, "secret-init"), "true"],
        env: () => ({ ...base, SECRET_0: arn }),
      },
      {
        name: "floor: Node.js starting and exiting (`node -e 0`)",
        argv: [process.execPath, "-e", "0"],
        env: () => base,
      },
      {
        name: "floor: Node.js, one unsigned request, no SDK (bench/node-floor-fetch.cjs)",
        argv: [process.execPath, join(REPO_ROOT, "bench", "node-floor-fetch.cjs")],
        env: (dir: string) => ({ ...base, FLOOR_SECRET_ID: name, FLOOR_OUTPUT: join(dir, "floor.env") }),
      },
    ];
    const pin = pinPrefix();
    const outputDirs = contenders.map(
      (_, i) => mkdirSync(join(outputRoot, String(i)), { recursive: true }) as string,
    );
    const samples = contenders.map(() => [] as number[][]);
    for (let round = 0; round < rounds; round++) {
      opts.log(`fetch side by side: round ${round + 1}/${rounds}`);
      for (const [i, c] of contenders.entries()) {
        const times: number[] = [];
        // One unmeasured run per round: the page cache and moto's connection handling warm.
        for (let run = 0; run <= perRound; run++) {
          const t0 = process.hrtime.bigint();
          const [command, ...args] = [...pin, ...c.argv];
          const r = spawnSync(command as string, args, {
            env: c.env(outputDirs[i] as string),
            encoding: "utf8",
          });
          const ms = Number(process.hrtime.bigint() - t0) / 1e6;
          if (r.status !== 0) throw new Error(`${c.name} exited ${r.status}:\n${r.stderr.slice(-2000)}`);
          if (run > 0) times.push(ms);
        }
        samples[i]?.push(times);
      }
    }
    // What each sm-injector contender and the floor wrote (secret-init hands the value to `true`,
    // unseen; `node -e 0` writes nothing).
    for (const [i, file] of [
      [0, "env"],
      [1, "env"],
      [4, "floor.env"],
    ] as const)
      if (!readFileSync(join(outputDirs[i] as string, file), "utf8").includes("value-0"))
        throw new Error(`${contenders[i]?.name} did not write the secret: it did not do the work`);
    const results = contenders.map((c, i) => {
      const all = (samples[i] ?? []).flat();
      return {
        name: c.name,
        command: c.argv.map((a) => a.replace(REPO_ROOT, ".").replace(bin, "$PEERS")).join(" "),
        medianMs: round1(median(all)),
        minMs: round1(Math.min(...all)),
        roundMediansMs: (samples[i] ?? []).map((r) => round1(median(r))),
      };
    });
    const goMs = results[2]?.medianMs ?? Number.NaN;
    return {
      results: results.map((r) => ({ ...r, ratioToGo: Math.round((r.medianMs / goMs) * 100) / 100 })),
      pinnedCpu: pin.at(-1),
      ratio: Math.round(((results[0]?.medianMs ?? Number.NaN) / goMs) * 100) / 100,
    };
  } finally {
    rmSync(outputRoot, { recursive: true, force: true });
    await moto.stop();
  }
}

/** The README table for the side-by-side run. */
export function peersTable(r: Awaited<ReturnType<typeof benchFetchPeers>>, rounds: number): string {
  const lines = [
    `**Init container start-up, side by side** (1 secret, 0 ms added RTT, moto on loopback; process start to exit; ${rounds} alternating rounds${r.pinnedCpu ? `, every process pinned to CPU ${r.pinnedCpu}` : ""}; \`npm run bench -- --peers\`):`,
    "",
    "| Init container | Median ms | Min ms | Round medians ms | × secret-init |",
    "|---|---|---|---|---|",
    ...r.results.map(
      (x) =>
        `| ${x.name} | ${x.medianMs} | ${x.minMs} | ${x.roundMediansMs.join(", ")} | ${x.ratioToGo ?? ""} |`,
    ),
    "",
    `Ratio, sm-injector as shipped to secret-init: **${r.ratio}×**; the Node.js floor (one unsigned request, no SDK) to secret-init: **${r.results[4]?.ratioToGo}×**.`,
  ];
  return lines.join("\n");
}
