// Fetched secrets + the spec's entries → the variables to write, or every problem found. Pure.
// Messages name the secret and the key, never a value: not even a JSON parser's message, which
// quotes the text it failed on.
import { isUtf8 } from "node:buffer";
import {
  type ExpandEntry,
  type FetchEntry,
  type SecretSource,
  sourceKey,
  type TemplateEntry,
  type TemplateReference,
  type ValueEntry,
} from "../contract/fetch-spec.ts";
import { type FilterInput, TEMPLATE_FILTERS } from "../contract/template-filters.ts";
import { type EnvVar, isValidEnvName } from "../envfile/index.ts";
import { problem } from "./errors.ts";
import { type JsonMember, type JsonObjectMembers, parseJsonObjectMembers } from "./json-members.ts";

export interface FetchedSecret {
  readonly secretId: string;
  readonly arn?: string;
  readonly versionId?: string;
  readonly versionStages?: readonly string[];
  /** SecretString as UTF-8 bytes, or SecretBinary as is. */
  readonly value: Buffer;
  readonly binary: boolean;
  /**
   * The SecretString held a lone surrogate, which `value` (UTF-8) could not carry: refused
   * wherever the secret is used, never written as U+FFFD.
   */
  readonly loneSurrogate?: boolean;
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

function parseJsonObject(secret: FetchedSecret): JsonObjectMembers | undefined {
  // A binary secret that is not UTF-8 would have its bad bytes replaced by U+FFFD: not JSON here.
  if (secret.loneSurrogate || !isUtf8(secret.value)) return undefined;
  return parseJsonObjectMembers(secret.value.toString("utf8"));
}

/** A lone surrogate (half of a UTF-16 pair), which UTF-8 cannot carry: Buffer.from writes U+FFFD. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export function hasLoneSurrogate(s: string): boolean {
  return LONE_SURROGATE.test(s);
}

const NOT_UNICODE =
  "holds a lone surrogate escape (such as \\ud800), which is not valid Unicode and cannot be written as UTF-8 (it would silently become U+FFFD); fix the secret";

/**
 * A member as the bytes a variable gets: a string as itself, anything else as its exact text in
 * the secret (`raw`). An error (naming no value) when the key is repeated or the string is not Unicode.
 */
function memberBytes(
  json: JsonObjectMembers,
  key: string,
  what: string,
): { value: Buffer; raw: boolean } | { error: string } {
  const where = `${what} key ${JSON.stringify(key)}`;
  if (hasLoneSurrogate(key)) return { error: problem("not-unicode", where, `the key ${NOT_UNICODE}`) };
  if (json.duplicates.has(key))
    return {
      error: problem(
        "key-ambiguous",
        where,
        "the key appears more than once in the secret's JSON object, so which value is meant is ambiguous (JSON readers disagree: most take the last, some the first); keep one",
      ),
    };
  const m = json.members.get(key) as JsonMember;
  if (m.kind === "raw") return { value: Buffer.from(m.text, "utf8"), raw: true };
  if (hasLoneSurrogate(m.value)) return { error: problem("not-unicode", where, `the value ${NOT_UNICODE}`) };
  return { value: Buffer.from(m.value, "utf8"), raw: false };
}

/** Where resolveVariables collects what each entry gives. */
interface Sink {
  /** Adds a variable, or an error when its name or value cannot be a variable. */
  add(name: string, value: Buffer, from: string): void;
  error(line: string): void;
  /** A missing key: skipped for an optional entry, else an error. */
  missing(line: string, optional: boolean): void;
}

/** `#key`: one member of a JSON object secret, as its exact bytes. */
function resolveKey(entry: ValueEntry, key: string, json: JsonObjectMembers, what: string, sink: Sink): void {
  if (!json.members.has(key)) {
    sink.missing(
      problem(
        "key-missing",
        what,
        `has no key ${JSON.stringify(key)} (it has ${json.members.size} keys: ${listKeys(json)})`,
      ),
      entry.optional,
    );
    return;
  }
  const bytes = memberBytes(json, key, what);
  if ("error" in bytes) sink.error(bytes.error);
  else sink.add(entry.env, bytes.value, `${what} key ${JSON.stringify(key)}`);
}

/** env-from: every (or every selected) member of a JSON object secret, one variable each. */
function resolveExpansion(entry: ExpandEntry, json: JsonObjectMembers, what: string, sink: Sink): void {
  for (const key of entry.keys ?? json.members.keys()) {
    if (!json.members.has(key)) {
      sink.missing(
        problem("key-missing", what, `has no key ${JSON.stringify(key)} (it has: ${listKeys(json)})`),
        entry.optional,
      );
      continue;
    }
    const bytes = memberBytes(json, key, what);
    if ("error" in bytes) {
      sink.error(bytes.error);
      continue;
    }
    // hasOwn: a key such as "constructor" must not pick up Object.prototype's.
    const name = Object.hasOwn(entry.rename, key) ? (entry.rename[key] as string) : `${entry.prefix}${key}`;
    sink.add(name, bytes.value, `${what} key ${JSON.stringify(key)}`);
  }
}

export function resolveVariables(
  entries: readonly FetchEntry[],
  fetched: ReadonlyMap<string, FetchOutcome>,
): Resolution {
  const vars: EnvVar[] = [];
  const skipped: string[] = [];
  const errors: string[] = [];
  const owner = new Map<string, string>();
  // Parsed once per secret, however many entries read it (up to 64 KiB each).
  const parsed = new Map<FetchedSecret, JsonObjectMembers | undefined>();
  const jsonOf = (secret: FetchedSecret) => {
    if (!parsed.has(secret)) parsed.set(secret, parseJsonObject(secret));
    return parsed.get(secret);
  };

  const sink: Sink = {
    add(name, value, from) {
      const refused = variableProblem(name, value, from, owner.get(name));
      if (refused !== undefined) {
        errors.push(refused);
        return;
      }
      owner.set(name, from);
      vars.push({ name, value });
    },
    error: (line) => errors.push(line),
    missing: (line, optional) => (optional ? skipped.push(`${line}; optional, skipped`) : errors.push(line)),
  };

  const secrets: Secrets = { fetched, jsonOf };
  for (const entry of entries) {
    if (entry.kind === "template") resolveTemplate(entry, secrets, sink);
    else resolveEntry(entry, secrets, sink);
  }
  return { vars, origins: owner, skipped, errors };
}

/** The fetched secrets, and each one's JSON members parsed once. */
interface Secrets {
  fetched: ReadonlyMap<string, FetchOutcome>;
  jsonOf(secret: FetchedSecret): JsonObjectMembers | undefined;
}

/**
 * The secret a source names, or the problem with it as a line (undefined when its fetch failed,
 * which is reported already). `what` names it in the line.
 */
function secretOf(
  source: SecretSource,
  secrets: Secrets,
  what: string,
): { secret: FetchedSecret } | { missing: string } | { error: string | undefined } {
  const outcome = secrets.fetched.get(sourceKey(source));
  if (outcome === undefined)
    return { error: problem("internal-error", what, "was not fetched (internal error)") };
  if ("failed" in outcome) return { error: undefined };
  if ("missing" in outcome) return { missing: `${what}: ${outcome.reason}` };
  if (outcome.loneSurrogate)
    return { error: problem("not-unicode", what, `the SecretString ${NOT_UNICODE}`) };
  return { secret: outcome };
}

function notAnObject(what: string, secret: FetchedSecret, need: string): string {
  return problem(
    "not-json-object",
    what,
    `is not a JSON object${secret.binary ? " (it is a binary secret)" : ""}, so ${need}; store it as a JSON object or reference the whole value`,
  );
}

/** `env.<VAR>` (whole value or `#key`) and `env-from`. */
function resolveEntry(entry: ValueEntry | ExpandEntry, secrets: Secrets, sink: Sink): void {
  const what = describeSource(entry.source);
  const got = secretOf(entry.source, secrets, what);
  if ("missing" in got) sink.missing(got.missing, entry.optional);
  else if ("error" in got) {
    if (got.error !== undefined) sink.error(got.error);
  } else if (entry.kind === "value" && entry.key === undefined) sink.add(entry.env, got.secret.value, what);
  else {
    const json = secrets.jsonOf(got.secret);
    if (json === undefined) {
      const need =
        entry.kind === "value"
          ? `key ${JSON.stringify(entry.key)} cannot be selected`
          : "its keys cannot be expanded";
      sink.error(notAnObject(what, got.secret, need));
    } else if (entry.kind === "value") resolveKey(entry, entry.key as string, json, what, sink);
    else resolveExpansion(entry, json, what, sink);
  }
}

/**
 * A template: every placeholder's value, filtered, between the literal text. Any placeholder that
 * cannot be resolved fails the variable (templates are never optional); every problem is reported,
 * each naming the template's variable and the reference, never a value.
 */
function resolveTemplate(entry: TemplateEntry, secrets: Secrets, sink: Sink): void {
  const pieces: Buffer[] = [];
  let complete = true;
  for (const part of entry.parts) {
    if (typeof part === "string") {
      pieces.push(Buffer.from(part, "utf8"));
      continue;
    }
    const value = placeholderValue(entry.env, part, secrets);
    if ("error" in value) {
      complete = false;
      if (value.error !== undefined) sink.error(value.error);
    } else pieces.push(value.bytes);
  }
  if (complete) sink.add(entry.env, Buffer.concat(pieces), `template ${entry.env}`);
}

/** `${source#key|filter}` of template `env`, as the bytes it puts in the value. */
function placeholderValue(
  env: string,
  ref: TemplateReference,
  secrets: Secrets,
): { bytes: Buffer } | { error: string | undefined } {
  const what = `template ${env}: ${describeSource(ref.source)}`;
  const got = secretOf(ref.source, secrets, what);
  if ("missing" in got) return { error: got.missing };
  if ("error" in got) return got;
  let input: FilterInput = { bytes: got.secret.value, raw: false };
  if (ref.key !== undefined) {
    const json = secrets.jsonOf(got.secret);
    if (json === undefined)
      return { error: notAnObject(what, got.secret, `key ${JSON.stringify(ref.key)} cannot be selected`) };
    if (!json.members.has(ref.key))
      return {
        error: problem(
          "key-missing",
          what,
          `has no key ${JSON.stringify(ref.key)} (it has ${json.members.size} keys: ${listKeys(json)})`,
        ),
      };
    const member = memberBytes(json, ref.key, what);
    if ("error" in member) return member;
    input = { bytes: member.value, raw: member.raw };
  }
  if (ref.filter === undefined) return { bytes: input.bytes };
  const filtered = TEMPLATE_FILTERS[ref.filter].apply(input);
  if (filtered === undefined)
    return {
      error: problem(
        "cannot-encode",
        `${what}${ref.key === undefined ? "" : ` key ${JSON.stringify(ref.key)}`}`,
        `the value is not UTF-8 text, so the ${ref.filter} filter cannot write it`,
      ),
    };
  return { bytes: filtered };
}

/** Why a value cannot become variable `name` (`from`: where it comes from), or undefined. */
function variableProblem(
  name: string,
  value: Buffer,
  from: string,
  setBy: string | undefined,
): string | undefined {
  if (!isValidEnvName(name))
    return problem(
      "invalid-variable-name",
      from,
      `${JSON.stringify(name)} is not a valid environment variable name (letters, digits and _, not starting with a digit); map the key to a valid name with rename, or select other keys`,
    );
  if (setBy !== undefined)
    return problem(
      "duplicate-variable",
      from,
      `variable ${name} is also set by ${setBy}; give each a distinct name (rename or prefix)`,
    );
  if (value.includes(0))
    return problem(
      "nul-byte",
      from,
      "the value contains a NUL byte, which no environment variable can carry; remove it from the secret or store the secret base64-encoded",
    );
  return undefined;
}

/** Key names are not secret (they are the schema of the secret); values never appear. */
function listKeys(json: JsonObjectMembers): string {
  const keys = [...json.members.keys()];
  const shown = keys.slice(0, 10).map((k) => JSON.stringify(k));
  return keys.length > 10 ? `${shown.join(", ")}, …` : shown.join(", ") || "none";
}
