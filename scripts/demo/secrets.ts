// The demo's secrets: the strategy's examples (erp/production/database as JSON with DATABASE_URL,
// erp/staging/jwt/secret_key as a plain string) and the ones the other examples/ reference. Values are
// random for each run, contain what breaks naive env files (quotes, `$`, backslashes, spaces), carry
// the marker SMDEMO (so a test can prove none is ever printed), and are never shown.
import { createHash, randomBytes } from "node:crypto";
import { urlencode } from "../../src/contract/template-filters.ts";

export interface SeededSecret {
  name: string;
  /** The SecretString stored. */
  value: string;
  /** What kind of value it is, for display (never the value). */
  describe: string;
  /** Every value an app may receive from it: the string itself, or each JSON key's value. */
  parts: string[];
  /** Label per part, e.g. `erp/production/database#DATABASE_URL`. */
  labels: string[];
}

const token = (bytes: number) => randomBytes(bytes).toString("base64url");

function json(name: string, fields: Record<string, string>): SeededSecret {
  return {
    name,
    value: JSON.stringify(fields),
    describe: `JSON with keys ${Object.keys(fields).join(", ")}`,
    parts: Object.values(fields),
    labels: Object.keys(fields).map((k) => `${name}#${k}`),
  };
}

function plain(name: string, value: string): SeededSecret {
  return { name, value, describe: `a string of ${value.length} characters`, parts: [value], labels: [name] };
}

/** A new value of the same shape (a rotation): every part new and random, labels marked "(new version)". */
export function rotated(s: SeededSecret): SeededSecret {
  const fresh = secretsFor().find((x) => x.name === s.name) as SeededSecret;
  return { ...fresh, labels: fresh.labels.map((l) => `${l} (new version)`) };
}

/**
 * An RDS-format secret (examples/fastapi-rds-database-url.yaml): the app receives the DATABASE_URL
 * its template composes, so that value is the part the app is checked against.
 */
function rds(password: string): SeededSecret {
  const fields = {
    engine: "postgres",
    host: "erp-db.erp.internal",
    port: 5432,
    username: "erp_app",
    password,
    dbname: "erp",
  };
  const enc = (v: string) => urlencode(Buffer.from(v, "utf8")).toString("latin1");
  const url = `postgresql+asyncpg://${enc(fields.username)}:${enc(password)}@${fields.host}:${fields.port}/${enc(fields.dbname)}`;
  return {
    name: "erp/production/rds",
    value: JSON.stringify(fields),
    describe: `JSON in the RDS format (${Object.keys(fields).join(", ")})`,
    parts: [url],
    labels: ["template DATABASE_URL ← erp/production/rds"],
  };
}

export function secretsFor(): SeededSecret[] {
  const dbPassword = `p'a"s$s\\SMDEMO-${token(9)}`;
  return [
    json("erp/production/database", {
      DATABASE_URL: `postgresql://erp_app:${encodeURIComponent(dbPassword)}@db.erp.internal:5432/erp?sslmode=require`,
      DATABASE_PASSWORD: dbPassword,
    }),
    plain("erp/staging/jwt/secret_key", `SMDEMO-${token(24)}-$HOME-\`id\``),
    json("erp/production/redis", { password: `SMDEMO ${token(12)} $(id)` }),
    rds(`p@ss:w/rd?#%$'"\\SMDEMO-${token(9)}`),
    json("erp/production/aws/s3_app_user_credentials", {
      access_key_id: `AKIASMDEMO${randomBytes(5).toString("hex").toUpperCase()}`,
      secret_access_key: `SMDEMO/${token(27)}+'"`,
    }),
  ];
}

export function sha256(value: string): string {
  return createHash("sha256").update(value, "utf8").digest("hex");
}

/** SHA-256 of every value an app may see → where it came from. */
export function maskedSecrets(secrets: readonly SeededSecret[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of secrets) for (const [i, p] of s.parts.entries()) out.set(sha256(p), s.labels[i] as string);
  return out;
}
