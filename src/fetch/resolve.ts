// Fetched secrets + the spec's entries → the variables to write, or every problem found. Pure.
// Messages name the secret and the key, never a value: not even a JSON parser's message, which
// quotes the text it failed on.
import { type EnvVar, isValidEnvName } from "../envfile/index.ts";
import { type FetchEntry, type SecretSource, sourceKey } from "../spec/fetch-spec.ts";

export interface FetchedSecret {
  readonly secretId: string;
  readonly arn?: string;
  readonly versionId?: string;
  readonly versionStages?: readonly string[];
  /** SecretString as UTF-8 bytes, or SecretBinary as is. */
  readonly value: Buffer;
  readonly binary: boolean;
}

/** A secret that does not exist (or not in that version); only an error for required entries. */
export interface MissingSecret {
  readonly missing: true;
  /** Why, as it follows "<secret>: " in an error line (AWS code, identity, hint). */
  readonly reason: string;
}

/** A secret whose fetch failed; its error is already reported, so its entries are passed over. */
export interface FailedSecret {
  readonly failed: true;
}

export type FetchOutcome = FetchedSecret | MissingSecret | FailedSecret;

export interface Resolution {
  vars: EnvVar[];
  /** Where each variable comes from ("erp/x key \"k\""), to name the secret in a later encoding error. */
  origins: Map<string, string>;
  /** One line per optional entry that was skipped, for the log. */
  skipped: string[];
  errors: string[];
}

export function describeSource(s: SecretSource): string {
  const version = s.versionId
    ? ` (version ${s.versionId})`
    : s.versionStage
      ? ` (stage ${s.versionStage})`
      : "";
  return `${s.secretId}${version}`;
}

function parseJsonObject(secret: FetchedSecret): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(secret.value.toString("utf8"));
    return typeof v === "object" && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** A JSON value as the bytes a variable gets: strings as themselves, anything else as JSON text. */
function jsonValueBytes(v: unknown): Buffer {
  return Buffer.from(typeof v === "string" ? v : JSON.stringify(v), "utf8");
}

export function resolveVariables(
  entries: readonly FetchEntry[],
  fetched: ReadonlyMap<string, FetchOutcome>,
): Resolution {
  const vars: EnvVar[] = [];
  const skipped: string[] = [];
  const errors: string[] = [];
  const owner = new Map<string, string>();

  const add = (name: string, value: Buffer, from: string) => {
    if (!isValidEnvName(name)) {
      errors.push(
        `${from}: ${JSON.stringify(name)} is not a valid environment variable name (letters, digits and _, not starting with a digit); map the key to a valid name with rename, or select other keys`,
      );
      return;
    }
    const prev = owner.get(name);
    if (prev !== undefined) {
      errors.push(
        `${from}: variable ${name} is also set by ${prev}; give each a distinct name (rename or prefix)`,
      );
      return;
    }
    if (value.includes(0)) {
      errors.push(
        `${from}: the value contains a NUL byte, which no environment variable can carry; remove it from the secret or store the secret base64-encoded`,
      );
      return;
    }
    owner.set(name, from);
    vars.push({ name, value });
  };

  for (const entry of entries) {
    const what = describeSource(entry.source);
    const outcome = fetched.get(sourceKey(entry.source));
    if (outcome === undefined) {
      errors.push(`${what}: was not fetched (internal error)`);
      continue;
    }
    if ("failed" in outcome) continue;
    if ("missing" in outcome) {
      if (entry.optional) skipped.push(`${what}: ${outcome.reason}; optional, skipped`);
      else errors.push(`${what}: ${outcome.reason}`);
      continue;
    }

    if (entry.kind === "value" && entry.key === undefined) {
      add(entry.env, outcome.value, what);
      continue;
    }

    const obj = parseJsonObject(outcome);
    if (obj === undefined) {
      const need =
        entry.kind === "value"
          ? `key ${JSON.stringify(entry.key)} cannot be selected`
          : "its keys cannot be expanded";
      errors.push(
        `${what}: is not a JSON object${outcome.binary ? " (it is a binary secret)" : ""}, so ${need}; store it as a JSON object or reference the whole value`,
      );
      continue;
    }

    if (entry.kind === "value") {
      const key = entry.key as string;
      if (!Object.hasOwn(obj, key)) {
        const msg = `${what}: has no key ${JSON.stringify(key)} (it has ${Object.keys(obj).length} keys: ${listKeys(obj)})`;
        if (entry.optional) skipped.push(`${msg}; optional, skipped`);
        else errors.push(msg);
        continue;
      }
      add(entry.env, jsonValueBytes(obj[key]), `${what} key ${JSON.stringify(key)}`);
      continue;
    }

    const keys = entry.keys ?? Object.keys(obj);
    for (const key of keys) {
      if (!Object.hasOwn(obj, key)) {
        const msg = `${what}: has no key ${JSON.stringify(key)} (it has: ${listKeys(obj)})`;
        if (entry.optional) skipped.push(`${msg}; optional, skipped`);
        else errors.push(msg);
        continue;
      }
      // hasOwn: a key such as "constructor" must not pick up Object.prototype's.
      const name = Object.hasOwn(entry.rename, key) ? (entry.rename[key] as string) : `${entry.prefix}${key}`;
      add(name, jsonValueBytes(obj[key]), `${what} key ${JSON.stringify(key)}`);
    }
  }
  return { vars, origins: owner, skipped, errors };
}

/** Key names are not secret (they are the schema of the secret); values never appear. */
function listKeys(obj: Record<string, unknown>): string {
  const keys = Object.keys(obj);
  const shown = keys.slice(0, 10).map((k) => JSON.stringify(k));
  return keys.length > 10 ? `${shown.join(", ")}, …` : shown.join(", ") || "none";
}
