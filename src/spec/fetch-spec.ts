// The compiled specification that the webhook hands to the init container (`sm-injector fetch`)
// in one environment variable. Both sides parse it with this schema, so a webhook and an init
// container of the same release always agree on its shape. It holds references only, never values.
import { z } from "zod";

/** Environment variable that carries the compiled FetchSpec as JSON into the init container. */
export const FETCH_SPEC_ENV = "SM_INJECTOR_SPEC";

export const OUTPUT_FORMATS = ["shell", "dotenv", "json", "files"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** POSIX-portable environment variable name. */
export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const EnvNameSchema = z
  .string()
  .regex(
    ENV_NAME_PATTERN,
    "must be a valid environment variable name (letters, digits, _; not starting with a digit)",
  );

export const SecretSourceSchema = z.strictObject({
  /** Secret name (e.g. erp/production/database) or full ARN. */
  secretId: z.string().min(1).max(2048),
  /** AWS region to call; absent means the SDK's own resolution (AWS_REGION in the init container). */
  region: z.string().min(1).optional(),
  versionId: z.string().min(1).optional(),
  versionStage: z.string().min(1).optional(),
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
  key: z.string().optional(),
  optional: z.boolean().default(false),
});
export type ValueEntry = z.infer<typeof ValueEntrySchema>;

/** Every key of a JSON secret into one variable each: name = rename[key] ?? prefix + key. */
export const ExpandEntrySchema = z.strictObject({
  kind: z.literal("expand"),
  source: SecretSourceSchema,
  prefix: z.string().default(""),
  /** Only these keys (all must exist unless optional); absent means every key. */
  keys: z.array(z.string()).optional(),
  rename: z.record(z.string(), EnvNameSchema).default({}),
  optional: z.boolean().default(false),
});
export type ExpandEntry = z.infer<typeof ExpandEntrySchema>;

export const FetchEntrySchema = z.discriminatedUnion("kind", [ValueEntrySchema, ExpandEntrySchema]);
export type FetchEntry = z.infer<typeof FetchEntrySchema>;

export const FILE_MODES = [0o400, 0o440, 0o444] as const;

export const FetchSpecSchema = z.strictObject({
  version: z.literal(1),
  format: z.enum(OUTPUT_FORMATS),
  /** Absolute directory (the memory-backed volume's mount path in the init container). */
  outputDir: z.string().regex(/^\/[A-Za-z0-9._/-]*$/, "must be an absolute path"),
  /** File name inside outputDir for shell, dotenv and json; unused for files. */
  fileName: z.string().regex(/^[A-Za-z0-9._-]+$/),
  fileMode: z.union(FILE_MODES.map((m) => z.literal(m))),
  /** Overall deadline for all fetches, retries included. */
  timeoutSeconds: z.number().int().min(1).max(600),
  /** Maximum Secrets Manager calls (GetSecretValue, BatchGetSecretValue) in flight. */
  concurrency: z.number().int().min(1).max(64).default(8),
  entries: z.array(FetchEntrySchema).min(1).max(500),
});
export type FetchSpec = z.infer<typeof FetchSpecSchema>;
/** The spec as written by the webhook (defaults may be omitted). */
export type FetchSpecInput = z.input<typeof FetchSpecSchema>;
