// A throwaway PostgreSQL cluster from Debian's packages (postgresql: initdb, pg_ctl), run in a temp
// directory on a free loopback port as an unprivileged user (PostgreSQL refuses to run as root), and
// a Python client (psycopg, i.e. libpq) for the tests: never the distribution's own service.
import { execFile } from "node:child_process";
import { chown, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { getFreePort } from "../e2e/harness/ports.ts";

const execFileAsync = promisify(execFile);

/** The uid/gid the cluster runs as when the tests run as root (Debian's nobody/nogroup). */
const UNPRIVILEGED = 65534;

/** The bin directory of the newest installed PostgreSQL (Debian: /usr/lib/postgresql/<major>/bin). */
export async function postgresBinDir(): Promise<string | undefined> {
  const root = "/usr/lib/postgresql";
  const majors = await readdir(root).catch(() => [] as string[]);
  const newest = majors.filter((m) => /^\d+$/.test(m)).sort((a, b) => Number(b) - Number(a))[0];
  return newest === undefined ? undefined : join(root, newest, "bin");
}

export interface Postgres {
  host: string;
  port: number;
  /** Runs `sql` as the superuser over the cluster's Unix socket; `literals` are quoted by psycopg (sql.Literal), as {name}. */
  admin(sql: string, literals?: Record<string, string>): Promise<void>;
  stop(): Promise<void>;
}

const ADMIN = `
import json, sys
import psycopg
from psycopg import sql
req = json.load(sys.stdin)
with psycopg.connect(host=req["socket"], port=req["port"], user="postgres", dbname="postgres", autocommit=True) as conn:
    conn.execute(sql.SQL(req["sql"]).format(**{k: sql.Literal(v) for k, v in req["literals"].items()}))
`;

/** Runs a program as the cluster's user: itself when not root, else nobody (setpriv, util-linux). */
function asClusterUser(bin: string, args: string[]): [string, string[]] {
  if (process.getuid?.() !== 0) return [bin, args];
  return [
    "setpriv",
    [`--reuid=${UNPRIVILEGED}`, `--regid=${UNPRIVILEGED}`, "--clear-groups", "--", bin, ...args],
  ];
}

export async function startPostgres(binDir: string): Promise<Postgres> {
  const dir = await mkdtemp(join(tmpdir(), "sm-injector-pg-"));
  if (process.getuid?.() === 0) await chown(dir, UNPRIVILEGED, UNPRIVILEGED);
  const data = join(dir, "data");
  const port = await getFreePort();
  const run = async (bin: string, args: string[]) => {
    const [cmd, argv] = asClusterUser(join(binDir, bin), args);
    await execFileAsync(cmd, argv, { cwd: dir, env: { PATH: process.env.PATH, LC_ALL: "C", HOME: dir } });
  };
  await run("initdb", [
    "-D",
    data,
    "-U",
    "postgres",
    "-E",
    "UTF8",
    "--locale=C",
    "--auth-local=trust",
    "--auth-host=scram-sha-256",
  ]);
  const options = `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=off -c password_encryption=scram-sha-256`;
  await run("pg_ctl", [
    "-D",
    data,
    "-l",
    join(dir, "postgres.log"),
    "-o",
    options,
    "-w",
    "-t",
    "60",
    "start",
  ]);
  return {
    host: "127.0.0.1",
    port,
    async admin(sql, literals = {}) {
      const child = execFileAsync("python3", ["-c", ADMIN]);
      child.child.stdin?.end(JSON.stringify({ socket: dir, port, sql, literals }));
      await child;
    },
    async stop() {
      await run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}
