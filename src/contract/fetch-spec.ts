// The compiled specification that the webhook hands to the init container (`sm-injector fetch`)
// in one environment variable. Both sides parse it with this schema, so a webhook and an init
// container of the same release always agree on its shape. It holds references only, never values.
//
// zod/mini, not zod: this module is on the init container's path (every pod start), and the
// tree-shakable API is ~40 KiB in the bundle where the classic one is ~570 KiB to load and compile.
// Without a locale its issues say only "Invalid input": describeIssue() words them.
import * as z from "zod/mini";
import { ENV_NAME_PATTERN } from "../envfile/names.ts";
import { OUTPUT_FORMATS } from "../envfile/types.ts";
import { TERMINATION_MESSAGE_LIMIT } from "./fetched-versions.ts";
import { absoluteDirProblem } from "./paths.ts";
import { TEMPLATE_FILTER_NAMES } from "./template-filters.ts";

/** Environment variable that carries the compiled FetchSpec as JSON into the init container. */
export const FETCH_SPEC_ENV = "SM_INJECTOR_SPEC";

/**
 * Most entries one spec may hold: the init container refuses more, so admission refuses them too
 * (one constant for both sides, so they can never disagree).
 */
export const MAX_FETCH_ENTRIES = 500;

/** Bytes of one template's text: a database URL with options takes a few hundred. */
export const MAX_TEMPLATE_BYTES = 4096;

/** `${…}` placeholders in one template (an RDS URL needs five). */
export const MAX_TEMPLATE_PLACEHOLDERS = 32;

/**
 * Largest serialized FetchSpec (bytes of the JSON in FETCH_SPEC_ENV). Linux refuses to exec a
 * process whose environment holds one string ("NAME=value" plus its NUL) over MAX_ARG_STRLEN =
 * 32 pages = 131,072 bytes ("Argument list too long"), so a larger spec makes a pod that can never
 * start; admission refuses it instead.
 */
export const MAX_FETCH_SPEC_BYTES = 131_072 - (FETCH_SPEC_ENV.length + 1) - 1;

export const EnvNameSchema = z
  .string()
  .check(
    z.regex(
      ENV_NAME_PATTERN,
      "must be a valid environment variable name (letters, digits, _; not starting with a digit)",
    ),
  );

export const SecretSourceSchema = z.strictObject({
  /** Secret name (e.g. erp/production/database) or full ARN. */
  secretId: z.string().check(z.minLength(1), z.maxLength(2048)),
  /** AWS region to call; absent means the SDK's own resolution (AWS_REGION in the init container). */
  region: z.optional(z.string().check(z.minLength(1))),
  versionId: z.optional(z.string().check(z.minLength(1))),
  versionStage: z.optional(z.string().check(z.minLength(1))),
});
export type SecretSource = z.infer<typeof SecretSourceSchema>;

/** Identity of one GetSecretValue call: each distinct (secret, region, version) is fetched once. */
export function sourceKey(s: SecretSource): string {
  return JSON.stringify([s.secretId, s.region ?? "", s.versionId ?? "", s.versionStage ?? ""]);
}

/** One secret (or one JSON key of it) into one variable. */
export const ValueEntrySchema = z.strictObject({
  kind: z.literal("value"),
  source: SecretSourceSchema,
  env: EnvNameSchema,
  /** JSON key to select; absent means the whole secret value. */
  key: z.optional(z.string()),
  optional: z._default(z.boolean(), false),
});
export type ValueEntry = z.infer<typeof ValueEntrySchema>;

/** Every key of a JSON secret into one variable each: name = rename[key] ?? prefix + key. */
export const ExpandEntrySchema = z.strictObject({
  kind: z.literal("expand"),
  source: SecretSourceSchema,
  prefix: z._default(z.string(), ""),
  /** Only these keys (all must exist unless optional); absent means every key. */
  keys: z.optional(z.array(z.string())),
  rename: z._default(z.record(z.string(), EnvNameSchema), {}),
  optional: z._default(z.boolean(), false),
});
export type ExpandEntry = z.infer<typeof ExpandEntrySchema>;

/** One `${…}` of a template: a secret, or one JSON key of it, and the filter applied to its value. */
export const TemplateReferenceSchema = z.strictObject({
  source: SecretSourceSchema,
  key: z.optional(z.string()),
  filter: z.optional(z.enum(TEMPLATE_FILTER_NAMES)),
});
export type TemplateReference = z.infer<typeof TemplateReferenceSchema>;

/**
 * One variable composed from literal text and secret values, e.g. a DATABASE_URL from the parts
 * of an RDS secret. Never optional: a URL with a part left out would be wrong, not absent.
 */
export const TemplateEntrySchema = z.strictObject({
  kind: z.literal("template"),
  env: EnvNameSchema,
  /** Literal text (a string) and placeholders, in order. */
  parts: z
    .array(z.union([z.string(), TemplateReferenceSchema]))
    .check(z.minLength(1), z.maxLength(2 * MAX_TEMPLATE_PLACEHOLDERS + 1)),
});
export type TemplateEntry = z.infer<typeof TemplateEntrySchema>;

export const FetchEntrySchema = z.discriminatedUnion("kind", [
  ValueEntrySchema,
  ExpandEntrySchema,
  TemplateEntrySchema,
]);
export type FetchEntry = z.infer<typeof FetchEntrySchema>;

/** The placeholders of a template entry, in order. */
export function templateReferences(entry: TemplateEntry): TemplateReference[] {
  return entry.parts.filter((p): p is TemplateReference => typeof p !== "string");
}

/** Every secret an entry reads: its source, or each placeholder's of a template (repeats included). */
export function entrySources(entry: FetchEntry): SecretSource[] {
  return entry.kind === "template" ? templateReferences(entry).map((r) => r.source) : [entry.source];
}

/** Whether the pod starts without the entry's secrets (a template never does). */
export function entryOptional(entry: FetchEntry): boolean {
  return entry.kind !== "template" && entry.optional;
}

export const FILE_MODES = [0o400, 0o440, 0o444] as const;

export const FetchSpecSchema = z.strictObject({
  version: z.literal(1),
  format: z.enum(OUTPUT_FORMATS),
  /** Absolute directory (the memory-backed volume's mount path in the init container). */
  outputDir: z.string().check(
    z.superRefine((dir, ctx) => {
      const problem = absoluteDirProblem(dir);
      if (problem !== undefined) ctx.issues.push({ code: "custom", message: problem, input: dir });
    }),
  ),
  /** File name inside outputDir for shell, dotenv and json; unused for files. */
  fileName: z.string().check(z.regex(/^[A-Za-z0-9._-]+$/, "must be a file name")),
  fileMode: z.union(FILE_MODES.map((m) => z.literal(m))),
  /** Overall deadline for all fetches, retries included. */
  timeoutSeconds: z.int().check(z.minimum(1), z.maximum(600)),
  /** Maximum Secrets Manager calls (GetSecretValue, BatchGetSecretValue) in flight. */
  concurrency: z._default(z.int().check(z.minimum(1), z.maximum(64)), 8),
  entries: z.array(FetchEntrySchema).check(z.minLength(1), z.maxLength(MAX_FETCH_ENTRIES)),
  /**
   * Read up to 20 AWSCURRENT secrets of a region with one BatchGetSecretValue (the webhook's
   * --batch-get-secret-value): needs that IAM action, and its quota (100 calls/s per region) is far
   * below GetSecretValue's, so any failure falls back to GetSecretValue.
   */
  batch: z._default(z.boolean(), false),
  /** Largest termination message the kubelet keeps for this container (terminationMessageLimit). */
  messageBytes: z._default(
    z.int().check(z.minimum(64), z.maximum(TERMINATION_MESSAGE_LIMIT)),
    TERMINATION_MESSAGE_LIMIT,
  ),
});
export type FetchSpec = z.infer<typeof FetchSpecSchema>;
/** The spec as written by the webhook (defaults may be omitted). */
export type FetchSpecInput = z.input<typeof FetchSpecSchema>;

/** One issue of a failed FetchSpecSchema parse, in words (zod/mini has no locale loaded). */
export function describeIssue(issue: z.core.$ZodIssue): string {
  const where = issue.path.length > 0 ? issue.path.join(".") : "spec";
  if (issue.message && issue.message !== "Invalid input") return `${where}: ${issue.message}`;
  const i = issue as z.core.$ZodIssue & {
    expected?: unknown;
    values?: unknown[];
    keys?: string[];
    minimum?: unknown;
    maximum?: unknown;
  };
  const detail =
    i.code === "invalid_type"
      ? `expected ${String(i.expected)}`
      : i.code === "invalid_value"
        ? `expected one of ${(i.values ?? []).map((v) => JSON.stringify(v)).join(", ")}`
        : i.code === "unrecognized_keys"
          ? `unknown key${(i.keys?.length ?? 0) > 1 ? "s" : ""} ${(i.keys ?? []).join(", ")}`
          : i.code === "too_small"
            ? `below the minimum ${String(i.minimum)}`
            : i.code === "too_big"
              ? `above the maximum ${String(i.maximum)}`
              : i.code.replaceAll("_", " ");
  return `${where}: ${detail}`;
}
