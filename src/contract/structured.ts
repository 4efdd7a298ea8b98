// The structured annotation (`sm-injector.io/secrets`): a YAML or JSON list of entries, its schema,
// its size limits (checked before zod), and a fast reader for the form people actually write,
// because the general YAML parser costs a large share of an admission (and is why the other forms
// are limited to MAX_YAML_BYTES):
//
//   - secret: erp/production/aws/s3_app_user_credentials
//     prefix: S3_
//
// The reader answers only where it is sure to agree with the YAML parser (a property test holds it
// to that: test/unit/fast-paths.test.ts) and hands everything else, errors included, to it.
import { z } from "zod";
import {
  formatCount,
  MAX_FIELD_BYTES,
  MAX_JSON_KEY_BYTES,
  MAX_KEYS_PER_ENTRY,
  MAX_VARIABLE_NAME_BYTES,
  utf8Bytes,
} from "./annotations.ts";
import { MAX_FETCH_ENTRIES, MAX_TEMPLATE_BYTES } from "./fetch-spec.ts";

/** The message for an entry with neither `secret` nor `template` (zod's, when it was required by zod). */
export const SECRET_REQUIRED = "secret (a name or ARN) is required";

export const StructuredEntrySchema = z.strictObject({
  // Required unless the entry is a template (checked by the compiler, with this message).
  secret: z.string({ error: SECRET_REQUIRED }).min(1, "secret must not be empty").optional(),
  env: z.string().optional(),
  key: z.string().min(1, "key must not be empty").optional(),
  prefix: z.string().optional(),
  keys: z.array(z.string().min(1)).min(1, "keys must list at least one key").optional(),
  rename: z.record(z.string(), z.string()).optional(),
  versionStage: z.string().optional(),
  versionId: z.string().optional(),
  region: z.string().optional(),
  optional: z.boolean().optional(),
  /** A template (`${REFERENCE|FILTER}` …) composing `env`'s value; see src/contract/template.ts. */
  template: z.string().optional(),
});

/** The fields an entry may have, in the schema's order (for "unknown field" messages). */
export const STRUCTURED_FIELDS = Object.keys(StructuredEntrySchema.shape);
export const StructuredSchema = z.array(StructuredEntrySchema, {
  error: "must be a YAML or JSON list of entries",
});
export type StructuredEntry = z.infer<typeof StructuredEntrySchema>;

/** The byte limit of each string field of an entry; fields not listed here get MAX_FIELD_BYTES. */
const FIELD_LIMITS: Readonly<Record<string, number>> = {
  key: MAX_JSON_KEY_BYTES,
  env: MAX_VARIABLE_NAME_BYTES,
  prefix: MAX_VARIABLE_NAME_BYTES,
  template: MAX_TEMPLATE_BYTES,
};

/**
 * The count and size limits of the parsed structured form, checked before its schema (whose cost
 * and messages grow with them): entries, keys and renames per entry, the bytes of every string.
 * Problems are returned with the path after the annotation name (`[3].keys: …`); shapes that are
 * not lists of maps are left to the schema, which explains them.
 */
export function checkStructuredLimits(doc: unknown): string[] {
  if (!Array.isArray(doc)) return [];
  if (doc.length > MAX_FETCH_ENTRIES)
    return [
      `: lists ${formatCount(doc.length)} entries; the init container takes at most ${MAX_FETCH_ENTRIES}: combine values into JSON secrets and read them with prefix`,
    ];
  const problems: string[] = [];
  doc.forEach((item, i) => {
    if (typeof item !== "object" || item === null || Array.isArray(item)) return;
    for (const [field, value] of Object.entries(item as Record<string, unknown>)) {
      const where = `[${i}].${field.length > 32 ? `${field.slice(0, 31)}…` : field}`;
      if (typeof value === "string") {
        const limit = FIELD_LIMITS[field] ?? MAX_FIELD_BYTES;
        const bytes = utf8Bytes(value);
        if (bytes > limit)
          problems.push(`${where}: is ${formatCount(bytes)} bytes; the limit is ${formatCount(limit)}`);
      } else if (field === "keys" && Array.isArray(value)) {
        problems.push(...checkKeyList(where, value));
      } else if (field === "rename" && typeof value === "object" && value !== null) {
        problems.push(...checkRenames(where, value as Record<string, unknown>));
      }
    }
  });
  return problems;
}

function checkKeyList(where: string, keys: readonly unknown[]): string[] {
  if (keys.length > MAX_KEYS_PER_ENTRY)
    return [
      `${where}: lists ${formatCount(keys.length)} keys; the limit is ${MAX_KEYS_PER_ENTRY} per entry (leave keys out to take every key of the JSON secret)`,
    ];
  const long = keys.filter((k) => typeof k === "string" && utf8Bytes(k) > MAX_JSON_KEY_BYTES).length;
  return long > 0
    ? [
        `${where}: ${long === 1 ? "a key is" : `${long} keys are`} longer than the limit of ${formatCount(MAX_JSON_KEY_BYTES)} bytes per JSON key`,
      ]
    : [];
}

function checkRenames(where: string, rename: Record<string, unknown>): string[] {
  const pairs = Object.entries(rename);
  if (pairs.length > MAX_KEYS_PER_ENTRY)
    return [
      `${where}: renames ${formatCount(pairs.length)} keys; the limit is ${MAX_KEYS_PER_ENTRY} per entry`,
    ];
  const long = pairs.filter(
    ([k, v]) =>
      utf8Bytes(k) > MAX_JSON_KEY_BYTES || (typeof v === "string" && utf8Bytes(v) > MAX_VARIABLE_NAME_BYTES),
  ).length;
  return long > 0
    ? [
        `${where}: ${long === 1 ? "a pair is" : `${long} pairs are`} over the limits of ${formatCount(MAX_JSON_KEY_BYTES)} bytes per JSON key and ${MAX_VARIABLE_NAME_BYTES} per variable name`,
      ]
    : [];
}

/** The fields of a structured entry whose values are scalars; `keys` and `rename` need nesting. */
const SCALAR_FIELDS = new Set([
  "secret",
  "env",
  "key",
  "prefix",
  "versionStage",
  "versionId",
  "region",
  "optional",
]);

// A plain scalar that YAML 1.2's core schema can only read as a string, a boolean or null: it starts
// with a letter, `_` or `/` (numbers, `.inf`, `~` and every YAML indicator start otherwise) and has
// no space, `#`, quote, bracket, comma or `: `; a `:` is allowed inside when a name character
// follows it, as in an ARN.
const LINE = /^(- | {2})([A-Za-z]+): ([A-Za-z_/](?:[A-Za-z0-9_/.@+=-]|:(?=[A-Za-z0-9_/.@+=-]))*)$/;
const BOOL_TRUE = /^(?:[Tt]rue|TRUE)$/;
const BOOL_FALSE = /^(?:[Ff]alse|FALSE)$/;
const NULL = /^(?:[Nn]ull|NULL)$/;

/**
 * What `yaml`'s parse returns for `text` when `text` is a block list of flat maps of plain scalars;
 * undefined for anything else (quotes, flow collections, nesting, comments, anchors, tabs, blank
 * lines, numbers, duplicate keys, fields other than the scalar ones, ...), for the YAML parser.
 */
export function parseSimpleYamlList(text: string): Record<string, string | boolean | null>[] | undefined {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  if (lines.length === 0) return undefined;
  const list: Record<string, string | boolean | null>[] = [];
  let item: Record<string, string | boolean | null> | undefined;
  for (const line of lines) {
    const m = LINE.exec(line);
    if (!m) return undefined;
    const [, lead, key, raw] = m as unknown as [string, string, string, string];
    if (!SCALAR_FIELDS.has(key)) return undefined;
    if (lead === "- ") {
      item = {};
      list.push(item);
    } else if (!item) return undefined;
    if (Object.hasOwn(item, key)) return undefined;
    item[key] = BOOL_TRUE.test(raw) ? true : BOOL_FALSE.test(raw) ? false : NULL.test(raw) ? null : raw;
  }
  return list;
}
