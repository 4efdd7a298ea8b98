// Interleaved A/B of `sm-injector fetch` started from the start-up snapshot and started plainly: 1
// secret from moto on loopback (0 ms added round trip), spawn to exit (the env file is written just
// before exit), medians over alternating runs (the order swaps every round so drift in the
// machine's load falls on both). By default the node and app of the amd64 image that
// scripts/build-images.sh built (unpacked with umoci), i.e. what the image ships:
//
//   node --import tsx bench/snapshot-ab.ts [RUNS] [--node NODE --app APP_DIR]
import { execFile, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { SNAPSHOT_BLOB } from "../scripts/build.mjs";
import { startMoto } from "../test/helpers/moto.ts";
import { REPO_ROOT } from "../test/helpers/tools.ts";

const run = promisify(execFile);

/** The amd64 image's rootfs, unpacked into a temporary directory: its node and its /app. */
function unpackImage(): { node: string; app: string; dir: string } {
  const out = execFileSync("bash", [path.join(REPO_ROOT, "scripts/build-images.sh"), "sm-injector"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  const line = out.split("\n").find((l) => l.endsWith("/sm-injector-amd64.oci.tar"));
  if (!line) throw new Error("scripts/build-images.sh printed no amd64 archive");
  const [ref, archive] = line.split(" ") as [string, string];
  const dir = mkdtempSync(path.join(tmpdir(), "sm-injector-snapshot-ab-"));
  execFileSync("tar", ["-xf", archive, "-C", dir]);
  execFileSync("umoci", ["unpack", "--image", `${dir}:${ref}`, `${dir}/bundle`], { stdio: "ignore" });
  return { node: `${dir}/bundle/rootfs/nodejs/bin/node`, app: `${dir}/bundle/rootfs/app`, dir };
}

function option(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i === -1 ? undefined : process.argv[i + 1];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

async function main(): Promise<void> {
  const runs = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 20);
  const given = option("--node") && option("--app");
  const image = given ? undefined : unpackImage();
  const node = option("--node") ?? (image?.node as string);
  const app = option("--app") ?? (image?.app as string);
  if (!existsSync(path.join(app, SNAPSHOT_BLOB))) throw new Error(`no ${SNAPSHOT_BLOB} in ${app}`);
  const entry = path.join(app, "sm-injector.mjs");
  const variants = {
    plain: [entry, "fetch"],
    snapshot: ["--snapshot-blob", path.join(app, SNAPSHOT_BLOB), entry, "fetch"],
  };
  const version = execFileSync(node, ["--version"], { encoding: "utf8" }).trim();
  const moto = await startMoto();
  const samples: Record<string, number[]> = { plain: [], snapshot: [] };
  const load = [loadavg()[0] as number];
  try {
    await moto.createSecret("erp/bench/one", "value");
    for (let r = -1; r < runs; r++) {
      const order = r % 2 === 0 ? (["plain", "snapshot"] as const) : (["snapshot", "plain"] as const);
      for (const name of order) {
        const out = mkdtempSync("/dev/shm/sm-injector-ab-");
        const spec = {
          version: 1,
          format: "shell",
          outputDir: out,
          fileName: "env",
          fileMode: 0o400,
          timeoutSeconds: 30,
          entries: [{ kind: "value", source: { secretId: "erp/bench/one" }, env: "ONE" }],
        };
        const t0 = process.hrtime.bigint();
        await run(node, variants[name], {
          env: {
            HOME: out,
            SM_INJECTOR_SPEC: JSON.stringify(spec),
            AWS_ENDPOINT_URL: moto.endpoint,
            AWS_REGION: "us-east-1",
            AWS_ACCESS_KEY_ID: "testing",
            AWS_SECRET_ACCESS_KEY: "testing",
          },
        });
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        if (!readFileSync(path.join(out, "env"), "utf8").includes("ONE="))
          throw new Error(`${name}: no file`);
        rmSync(out, { recursive: true, force: true });
        // (round -1 warms the page cache and moto; not counted)
        if (r >= 0) samples[name]?.push(ms);
      }
    }
    load.push(loadavg()[0] as number);
  } finally {
    await moto.stop();
    if (image) rmSync(image.dir, { recursive: true, force: true });
  }
  console.log(
    `node ${version} (${node}), ${runs} alternating runs each, load average ${load.map((l) => l.toFixed(2)).join(" -> ")}`,
  );
  for (const [name, xs] of Object.entries(samples))
    console.log(
      `${name.padEnd(8)} median ${median(xs).toFixed(1)} ms  min ${Math.min(...xs).toFixed(1)}  max ${Math.max(...xs).toFixed(1)}`,
    );
  console.log(
    `snapshot / plain: ${(median(samples.snapshot ?? []) / median(samples.plain ?? [])).toFixed(2)}`,
  );
}

await main();
