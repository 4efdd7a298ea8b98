// Secret references in the one-line annotation form:
//
//   NAME_OR_ARN [?param=value[&param=value…]] [#json-key]
//
// Secrets Manager names allow only letters, digits and `/_+=.@-`, so `?`, `&` and `#` can never be
// part of a name: the first `#` starts the JSON key (which may contain anything, `#` included) and
// the first `?` starts the parameters. An ARN's colons are fine for the same reason. The secrets an
// AWS service creates and manages for you are named SERVICE!NAME (RDS's master user passwords:
// `rds!db-…`, `rds!cluster-…`): no user can create such a name, but a pod reads it like any other.

import { formatCount, MAX_JSON_KEY_BYTES, MAX_VARIABLE_NAME_BYTES, quote, utf8Bytes } from "./annotations.ts";

/** The service of an AWS-managed secret's `SERVICE!` prefix (`rds`). */
const SERVICE = "[a-z][a-z0-9-]{0,63}";
/** An AWS service's prefix of the secrets it manages (`rds!`), then the name's own characters. */
const NAME_SYNTAX = `(?:${SERVICE}!)?[A-Za-z0-9/_+=.@-]+`;
/** A secret name, at most 512 characters: the one definition (IAM policies and the contract use it). */
export const SECRET_NAME_PATTERN = new RegExp(`^(?=.{1,512}$)${NAME_SYNTAX}$`, "s");
const ARN_PATTERN = new RegExp(
  `^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-[a-z]|aws-eusc):secretsmanager:([a-z0-9-]+):(\\d{12}):secret:((?=.{1,512}$)${NAME_SYNTAX})$`,
  "s",
);
/** What a name may contain, for the error message. */
const NAME_RULE = "letters, digits and / _ + = . @ -, after an AWS service's prefix such as rds!";
export const REGION_PATTERN = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;
const VERSION_STAGE_PATTERN = /^[A-Za-z0-9/_+=.@-]{1,256}$/;
const VERSION_ID_PATTERN = /^[A-Za-z0-9-]{32,64}$/;

export interface ParsedSecretId {
  /** As the user wrote it: a name or an ARN. */
  readonly secretId: string;
  /** The region an ARN names, if it is an ARN. */
  readonly arnRegion?: string;
  /** The secret name (for an ARN, the part after `secret:`). */
  readonly name: string;
}

export interface ParsedReference extends ParsedSecretId {
  readonly versionStage?: string;
  readonly versionId?: string;
  readonly key?: string;
  readonly optional: boolean;
  readonly prefix?: string;
}

export type Result<T> = { ok: true; value: T } | { ok: false; error: string };

const fail = (error: string): { ok: false; error: string } => ({ ok: false, error });

/** Checks a secret name or ARN against what Secrets Manager accepts. */
export function parseSecretId(raw: string): Result<ParsedSecretId> {
  const id = raw.trim();
  if (id === "") return fail("the secret name is empty");
  if (id.startsWith("arn:")) {
    const m = ARN_PATTERN.exec(id);
    if (!m) {
      return fail(
        `${quote(id)} is not a valid Secrets Manager ARN (expected arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)`,
      );
    }
    return { ok: true, value: { secretId: id, arnRegion: m[2] as string, name: m[4] as string } };
  }
  if (id.length > 512)
    return fail(`the secret name is ${formatCount(id.length)} characters long; Secrets Manager allows 512`);
  if (SECRET_NAME_PATTERN.test(id)) return { ok: true, value: { secretId: id, name: id } };
  const bang = id.indexOf("!");
  const body = bang !== -1 && new RegExp(`^${SERVICE}$`).test(id.slice(0, bang)) ? id.slice(bang + 1) : id;
  const bad = [...new Set([...body].filter((c) => !/[A-Za-z0-9/_+=.@-]/.test(c)))];
  const shown = bad
    .slice(0, 10)
    .map((c) => JSON.stringify(c))
    .join(", ");
  return fail(
    bad.length > 0
      ? `${quote(id)} contains ${shown}${bad.length > 10 ? " and more" : ""}, which Secrets Manager names cannot contain (allowed: ${NAME_RULE})`
      : `${quote(id)} is not a Secrets Manager name (allowed: ${NAME_RULE})`,
  );
}

export function checkVersionStage(stage: string): string | undefined {
  return VERSION_STAGE_PATTERN.test(stage)
    ? undefined
    : `versionStage ${quote(stage)} is not a valid staging label (1-256 of letters, digits and / _ + = . @ -)`;
}

export function checkVersionId(id: string): string | undefined {
  return VERSION_ID_PATTERN.test(id)
    ? undefined
    : `versionId ${quote(id)} is not a valid version id (32-64 letters, digits and hyphens, e.g. a UUID)`;
}

const PARAMS = ["versionStage", "versionId", "optional", "prefix"] as const;
type Param = (typeof PARAMS)[number];

/** The reference's three parts: the name or ARN, the `?` parameters, the `#` key. */
interface ReferenceParts {
  text: string;
  idPart: string;
  query: string | undefined;
  key: string | undefined;
}

/** Splits at the first `#` (the key may contain anything) and then the first `?` (no name contains one). */
function splitReference(raw: string): ReferenceParts {
  const text = raw.trim();
  const hash = text.indexOf("#");
  const head = hash === -1 ? text : text.slice(0, hash);
  const key = hash === -1 ? undefined : text.slice(hash + 1);
  const q = head.indexOf("?");
  return {
    text,
    idPart: q === -1 ? head : head.slice(0, q),
    query: q === -1 ? undefined : head.slice(q + 1),
    key,
  };
}

/** Why the `#key` part cannot be used here, or undefined. */
function keyProblem(parts: ReferenceParts, expand: boolean): string | undefined {
  const { key, idPart, text } = parts;
  if (key === undefined) return undefined;
  if (expand)
    return `${quote(`#${key}`)} selects one key, but env-from expands every key; use sm-injector.io/env.<VAR>: ${plainOrQuoted(`${idPart}#${key}`)} for one key`;
  if (key === "") return `${quote(text)} ends with "#" but names no JSON key after it`;
  const bytes = utf8Bytes(key);
  if (bytes > MAX_JSON_KEY_BYTES)
    return `the JSON key after "#" is ${formatCount(bytes)} bytes; the limit is ${formatCount(MAX_JSON_KEY_BYTES)} (the spec travels in one environment variable of the init container)`;
  return undefined;
}

type Params = Partial<Record<Param, string>>;

/** The `?name=value&…` parameters, each known, given once and %-decoded. */
function parseParams(parts: ReferenceParts, expand: boolean): Result<Params> {
  const params: Params = {};
  if (parts.query === undefined) return { ok: true, value: params };
  if (parts.query === "") return fail(`${quote(parts.text)} has a "?" with no parameters after it`);
  for (const pair of parts.query.split("&")) {
    const eq = pair.indexOf("=");
    const name = eq === -1 ? pair : pair.slice(0, eq);
    const value = eq === -1 ? "" : decodeParam(pair.slice(eq + 1));
    if (!(PARAMS as readonly string[]).includes(name)) {
      return fail(
        `unknown parameter ${quote(name)} (known: versionStage, versionId, optional${expand ? ", prefix" : ""})`,
      );
    }
    if (name === "prefix" && !expand) {
      return fail(
        `"prefix" only applies to env-from; for one variable, name it in the annotation key instead`,
      );
    }
    if (name in params) return fail(`parameter "${name}" is given twice`);
    if (value === undefined) return fail(`parameter "${name}" has an invalid %-escape`);
    params[name as Param] = value;
  }
  return { ok: true, value: params };
}

/** Each parameter's value checked, and the two that exclude each other; `optional` as a boolean. */
function checkParams(params: Params): Result<boolean> {
  if (params.versionStage !== undefined && params.versionId !== undefined) {
    return fail("set either versionStage or versionId, not both");
  }
  const stageError = params.versionStage !== undefined ? checkVersionStage(params.versionStage) : undefined;
  if (stageError) return fail(stageError);
  const idError = params.versionId !== undefined ? checkVersionId(params.versionId) : undefined;
  if (idError) return fail(idError);
  if (params.prefix !== undefined && utf8Bytes(params.prefix) > MAX_VARIABLE_NAME_BYTES)
    return fail(
      `prefix is ${formatCount(utf8Bytes(params.prefix))} bytes; the limit is ${MAX_VARIABLE_NAME_BYTES} (it starts variable names)`,
    );
  if (params.optional === undefined) return { ok: true, value: false };
  if (params.optional !== "true" && params.optional !== "false") {
    return fail(`optional must be "true" or "false", not ${quote(params.optional)}`);
  }
  return { ok: true, value: params.optional === "true" };
}

/**
 * The reference as a value. The common shapes are literals, which V8 builds many times faster than
 * objects grown field by field or with conditional spreads (an admission parses a reference per
 * variable); the rest grow in the same key order.
 */
function referenceValue(
  id: ParsedSecretId,
  params: Params,
  key: string | undefined,
  optional: boolean,
): ParsedReference {
  const { secretId, arnRegion, name } = id;
  if (params.versionStage === undefined && params.versionId === undefined && params.prefix === undefined) {
    if (key === undefined)
      return arnRegion === undefined ? { secretId, name, optional } : { secretId, arnRegion, name, optional };
    return arnRegion === undefined
      ? { secretId, name, key, optional }
      : { secretId, arnRegion, name, key, optional };
  }
  const value: { -readonly [K in keyof ParsedReference]?: ParsedReference[K] } =
    arnRegion === undefined ? { secretId, name } : { secretId, arnRegion, name };
  if (params.versionStage !== undefined) value.versionStage = params.versionStage;
  if (params.versionId !== undefined) value.versionId = params.versionId;
  if (key !== undefined) value.key = key;
  if (params.prefix !== undefined) value.prefix = params.prefix;
  value.optional = optional;
  return value as ParsedReference;
}

/**
 * Parses the one-line reference form: split → the name or ARN → the key → the parameters → their
 * values. `expand` is true for `env-from`, where `prefix=` is meaningful and `#key` is not.
 */
export function parseReference(raw: string, opts: { expand: boolean }): Result<ParsedReference> {
  const parts = splitReference(raw);
  const id = parseSecretId(parts.idPart);
  if (!id.ok) return id;
  const badKey = keyProblem(parts, opts.expand);
  if (badKey !== undefined) return fail(badKey);
  const params = parseParams(parts, opts.expand);
  if (!params.ok) return params;
  const optional = checkParams(params.value);
  if (!optional.ok) return optional;
  return { ok: true, value: referenceValue(id.value, params.value, parts.key, optional.value) };
}

/** Short printable text as it is (it reads as what to type); anything else quoted. */
function plainOrQuoted(text: string): string {
  return text.length <= 100 && /^[\x21-\x7e]*$/.test(text) ? text : quote(text);
}

function decodeParam(v: string): string | undefined {
  try {
    return decodeURIComponent(v);
  } catch {
    return undefined;
  }
}

/** The version part of a reference as written: `?versionId=…`, `?versionStage=…` or nothing. */
export function versionParam(source: { versionId?: string; versionStage?: string }): string {
  if (source.versionId !== undefined) return `?versionId=${source.versionId}`;
  if (source.versionStage !== undefined) return `?versionStage=${encodeURIComponent(source.versionStage)}`;
  return "";
}
