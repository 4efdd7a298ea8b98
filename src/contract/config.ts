// What the operator configures for every injection (Helm values → webhook flags/env → this).
// Pure: the webhook and `sm-injector inject` both build it from their own inputs.
import { z } from "zod";
import { OUTPUT_FORMATS } from "../envfile/types.ts";
import { MAX_FETCH_ENTRIES } from "./fetch-spec.ts";
import { absoluteDirProblem } from "./paths.ts";
import { REGION_PATTERN } from "./reference.ts";

export const Quantity = z
  .string()
  .regex(/^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|k|M|G)?$/, "must be a Kubernetes quantity like 64Mi or 100m");
const AbsoluteDir = z.string().superRefine((dir, ctx) => {
  const problem = absoluteDirProblem(dir);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
});

/** The init container's requests and limits unless the operator sets them. */
export const DEFAULT_INIT_RESOURCES = {
  requests: { cpu: "50m", memory: "64Mi" },
  limits: { cpu: "500m", memory: "128Mi" },
};

export const InjectorConfigSchema = z.strictObject({
  /** Image of the init container; the webhook's own image by default. */
  image: z.string().min(1),
  imagePullPolicy: z.enum(["Always", "IfNotPresent", "Never"]).default("IfNotPresent"),
  /** Region used when neither an ARN, the region annotation nor the container's AWS_REGION gives one. */
  defaultRegion: z.string().regex(REGION_PATTERN, "must be an AWS region like eu-west-1").optional(),
  defaultFormat: z.enum(OUTPUT_FORMATS).default("shell"),
  defaultOutputDir: AbsoluteDir.default("/run/sm-injector"),
  /** output-dir annotations must lie strictly under one of these. */
  allowedOutputRoots: z.array(AbsoluteDir).min(1).default(["/run", "/var/run", "/secrets", "/etc/secrets"]),
  maxSecrets: z.number().int().min(1).max(MAX_FETCH_ENTRIES).default(50),
  defaultTimeoutSeconds: z.number().int().min(1).max(600).default(60),
  maxTimeoutSeconds: z.number().int().min(1).max(600).default(300),
  // 20 in flight: a pod's secrets (usually at most 20, BatchGetSecretValue's batch) are read in
  // one round trip. It shapes each pod's burst only: the calls per second a rollout makes are pods
  // started per second × secrets per pod, whatever this is (see the README's Benchmarks).
  concurrency: z.number().int().min(1).max(64).default(20),
  volumeSizeLimit: Quantity.default("1Mi"),
  resources: z
    .strictObject({
      requests: z.strictObject({ cpu: Quantity, memory: Quantity }),
      limits: z.strictObject({ cpu: Quantity, memory: Quantity }),
    })
    .default(DEFAULT_INIT_RESOURCES),
  /** uid/gid of the init container when the app's cannot be used. */
  defaultUid: z.number().int().min(1).default(65532),
  defaultGid: z.number().int().min(1).default(65532),
  /**
   * When false (default) the init container gets AWS_EC2_METADATA_DISABLED=true, so a pod without
   * IRSA or Pod Identity fails instead of silently fetching with the node's instance role.
   */
  allowNodeIdentity: z.boolean().default(false),
  /** Let init containers use BatchGetSecretValue (see FetchSpec.batch). */
  batchGetSecretValue: z.boolean().default(false),
});
export type InjectorConfig = z.infer<typeof InjectorConfigSchema>;
