// `sm-injector webhook` configuration: flags win over environment variables (SM_INJECTOR_*),
// everything is validated with zod, and a bad value stops the server at start-up with a message
// that names the flag and the variable.
import { parseArgs } from "node:util";
import { z } from "zod";
import { type InjectorConfig, InjectorConfigSchema } from "../spec/config.ts";

/** flag name → [env var, description]. The CLI help is generated from this table. */
export const WEBHOOK_OPTIONS = {
  port: ["SM_INJECTOR_PORT", "HTTPS port (default 8443)"],
  host: ["SM_INJECTOR_HOST", "listen address (default 0.0.0.0)"],
  "tls-cert-file": ["SM_INJECTOR_TLS_CERT_FILE", "serving certificate (PEM); reloaded when it changes"],
  "tls-key-file": ["SM_INJECTOR_TLS_KEY_FILE", "serving key (PEM)"],
  "tls-reload-interval-seconds": [
    "SM_INJECTOR_TLS_RELOAD_INTERVAL_SECONDS",
    "how often to check the files (default 10)",
  ],
  image: ["SM_INJECTOR_IMAGE", "image of the injected init container (required)"],
  "image-pull-policy": ["SM_INJECTOR_IMAGE_PULL_POLICY", "IfNotPresent (default), Always or Never"],
  "default-region": ["SM_INJECTOR_DEFAULT_REGION", "region when neither the pod nor an ARN gives one"],
  "default-format": ["SM_INJECTOR_DEFAULT_FORMAT", "shell (default), dotenv, json or files"],
  "default-output-dir": ["SM_INJECTOR_DEFAULT_OUTPUT_DIR", "default /run/sm-injector"],
  "allowed-output-roots": [
    "SM_INJECTOR_ALLOWED_OUTPUT_ROOTS",
    "comma-separated roots for output-dir (default /run,/var/run,/secrets,/etc/secrets)",
  ],
  "max-secrets": ["SM_INJECTOR_MAX_SECRETS", "distinct secrets per pod (default 50)"],
  "default-timeout-seconds": ["SM_INJECTOR_DEFAULT_TIMEOUT_SECONDS", "fetch deadline (default 60)"],
  "max-timeout-seconds": [
    "SM_INJECTOR_MAX_TIMEOUT_SECONDS",
    "largest timeout-seconds a pod may ask for (default 300)",
  ],
  concurrency: ["SM_INJECTOR_CONCURRENCY", "Secrets Manager calls in flight per pod (default 20)"],
  "batch-get-secret-value": [
    "SM_INJECTOR_BATCH_GET_SECRET_VALUE",
    "true: init containers read up to 20 secrets per call (needs secretsmanager:BatchGetSecretValue; default false)",
  ],
  "volume-size-limit": ["SM_INJECTOR_VOLUME_SIZE_LIMIT", "memory volume size limit (default 1Mi)"],
  "init-cpu-request": ["SM_INJECTOR_INIT_CPU_REQUEST", "default 50m"],
  "init-memory-request": ["SM_INJECTOR_INIT_MEMORY_REQUEST", "default 64Mi"],
  "init-cpu-limit": ["SM_INJECTOR_INIT_CPU_LIMIT", "default 500m"],
  "init-memory-limit": ["SM_INJECTOR_INIT_MEMORY_LIMIT", "default 128Mi"],
  "run-as-user": ["SM_INJECTOR_RUN_AS_USER", "init container uid when the app's is unknown (default 65532)"],
  "run-as-group": [
    "SM_INJECTOR_RUN_AS_GROUP",
    "init container gid when no shared group is known (default 65532)",
  ],
  "allow-node-identity": [
    "SM_INJECTOR_ALLOW_NODE_IDENTITY",
    "true lets the init container fall back to the node's instance role (default false)",
  ],
  "namespace-policy": [
    "SM_INJECTOR_NAMESPACE_POLICY",
    "true (default) enforces Namespaces' sm-injector.io/allowed-secrets; false skips the look-up",
  ],
  kubeconfig: ["SM_INJECTOR_KUBECONFIG", "kubeconfig file (default: in-cluster, then KUBECONFIG)"],
  "serviceaccount-cache-seconds": [
    "SM_INJECTOR_SERVICEACCOUNT_CACHE_SECONDS",
    "cache ServiceAccount look-ups (default 30)",
  ],
  "body-limit-bytes": ["SM_INJECTOR_BODY_LIMIT_BYTES", "largest AdmissionReview accepted (default 3145728)"],
  "request-timeout-seconds": [
    "SM_INJECTOR_REQUEST_TIMEOUT_SECONDS",
    "TLS handshake, request head and body must arrive within this; idle connections close after it (default 4; keep it below the webhook's timeoutSeconds)",
  ],
  "max-connections": ["SM_INJECTOR_MAX_CONNECTIONS", "open connections at most (default 512)"],
  "max-in-flight-body-bytes": [
    "SM_INJECTOR_MAX_IN_FLIGHT_BODY_BYTES",
    "bytes of request bodies held at once; more are refused with 503 (default 33554432; at least twice --body-limit-bytes)",
  ],
  "client-ca-file": [
    "SM_INJECTOR_CLIENT_CA_FILE",
    "CA (PEM) of the API server's client certificate: /mutate then requires one (probes and /metrics do not); reloaded when it changes",
  ],
  "client-allowed-names": [
    "SM_INJECTOR_CLIENT_ALLOWED_NAMES",
    "comma-separated CNs or DNS/URI SANs of accepted client certificates (default: any the CA signed)",
  ],
  "log-level": ["SM_INJECTOR_LOG_LEVEL", "info (default), debug, warn, error"],
} as const;

export type WebhookOption = keyof typeof WEBHOOK_OPTIONS;

const Int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const WebhookSettingsSchema = z.strictObject({
  port: Int(0, 65535).default(8443),
  host: z.string().min(1).default("0.0.0.0"),
  tlsCertFile: z.string({ error: "is required (the serving certificate, PEM)" }).min(1),
  tlsKeyFile: z.string({ error: "is required (the serving key, PEM)" }).min(1),
  tlsReloadIntervalSeconds: Int(1, 3600).default(10),
  kubeconfig: z.string().optional(),
  namespacePolicy: z
    .enum(["true", "false"])
    .default("true")
    .transform((v) => v === "true"),
  serviceAccountCacheSeconds: Int(0, 3600).default(30),
  bodyLimitBytes: Int(1024, 64 * 1024 * 1024).default(3 * 1024 * 1024),
  requestTimeoutSeconds: Int(1, 30).default(4),
  maxConnections: Int(1, 1_000_000).default(512),
  maxInFlightBodyBytes: Int(2048, 1024 * 1024 * 1024).default(32 * 1024 * 1024),
  clientCaFile: z.string().min(1).optional(),
  clientAllowedNames: z
    .string()
    .transform((v) =>
      v
        .split(",")
        .map((n) => n.trim())
        .filter(Boolean),
    )
    .optional(),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
});

export interface WebhookConfig extends z.infer<typeof WebhookSettingsSchema> {
  injector: InjectorConfig;
}

export class ConfigError extends Error {}

const Bool = z.enum(["true", "false"]).transform((v) => v === "true");

/** Problems between settings that are each valid alone. */
function settingsConflicts(s: z.infer<typeof WebhookSettingsSchema>): string[] {
  const problems: string[] = [];
  // Large bodies may use half the budget (body-budget.ts): one body at the limit must fit in it.
  if (s.maxInFlightBodyBytes < 2 * s.bodyLimitBytes) {
    problems.push(
      `--max-in-flight-body-bytes (SM_INJECTOR_MAX_IN_FLIGHT_BODY_BYTES): must be at least twice --body-limit-bytes (${2 * s.bodyLimitBytes}), got ${s.maxInFlightBodyBytes}`,
    );
  }
  if (s.clientAllowedNames?.length && !s.clientCaFile) {
    problems.push(
      "--client-allowed-names (SM_INJECTOR_CLIENT_ALLOWED_NAMES): needs --client-ca-file (SM_INJECTOR_CLIENT_CA_FILE), the CA that signs the API server's client certificate",
    );
  }
  return problems;
}

/** Reads flags and SM_INJECTOR_* variables; throws ConfigError listing every bad value. */
export function loadWebhookConfig(argv: string[], env: NodeJS.ProcessEnv): WebhookConfig {
  const options = Object.fromEntries(
    Object.keys(WEBHOOK_OPTIONS).map((k) => [k, { type: "string" as const }]),
  );
  let values: Record<string, string | undefined>;
  try {
    values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Record<
      string,
      string | undefined
    >;
  } catch (e) {
    throw new ConfigError(`${(e as Error).message}. Run \`sm-injector webhook --help\` for the options.`);
  }
  const get = (flag: WebhookOption): string | undefined =>
    values[flag] ?? env[WEBHOOK_OPTIONS[flag][0]] ?? undefined;
  const where = (flag: WebhookOption) => `--${flag} (${WEBHOOK_OPTIONS[flag][0]})`;

  const problems: string[] = [];
  const field = <T>(flag: WebhookOption, schema: z.ZodType<T>): T | undefined => {
    const raw = get(flag);
    if (raw === undefined || raw === "") return undefined;
    const r = schema.safeParse(raw);
    if (!r.success) {
      problems.push(`${where(flag)}: ${r.error.issues[0]?.message ?? "invalid"} (got "${raw}")`);
      return undefined;
    }
    return r.data;
  };
  const num = (flag: WebhookOption) => field(flag, z.coerce.number().int());
  const settingsInput = {
    port: get("port"),
    host: get("host"),
    tlsCertFile: get("tls-cert-file"),
    tlsKeyFile: get("tls-key-file"),
    tlsReloadIntervalSeconds: get("tls-reload-interval-seconds"),
    kubeconfig: get("kubeconfig"),
    namespacePolicy: get("namespace-policy"),
    serviceAccountCacheSeconds: get("serviceaccount-cache-seconds"),
    bodyLimitBytes: get("body-limit-bytes"),
    requestTimeoutSeconds: get("request-timeout-seconds"),
    maxConnections: get("max-connections"),
    maxInFlightBodyBytes: get("max-in-flight-body-bytes"),
    clientCaFile: get("client-ca-file"),
    clientAllowedNames: get("client-allowed-names"),
    logLevel: get("log-level"),
  };
  const flagOf: Record<string, WebhookOption> = {
    port: "port",
    host: "host",
    tlsCertFile: "tls-cert-file",
    tlsKeyFile: "tls-key-file",
    tlsReloadIntervalSeconds: "tls-reload-interval-seconds",
    kubeconfig: "kubeconfig",
    namespacePolicy: "namespace-policy",
    serviceAccountCacheSeconds: "serviceaccount-cache-seconds",
    bodyLimitBytes: "body-limit-bytes",
    requestTimeoutSeconds: "request-timeout-seconds",
    maxConnections: "max-connections",
    maxInFlightBodyBytes: "max-in-flight-body-bytes",
    clientCaFile: "client-ca-file",
    clientAllowedNames: "client-allowed-names",
    logLevel: "log-level",
  };
  const clean = Object.fromEntries(
    Object.entries(settingsInput).filter(([, v]) => v !== undefined && v !== ""),
  );
  const settings = WebhookSettingsSchema.safeParse(clean);
  if (!settings.success) {
    for (const i of settings.error.issues) {
      const key = String(i.path[0]);
      const flag = flagOf[key];
      problems.push(`${flag ? where(flag) : key}: ${i.message}`);
    }
  } else {
    problems.push(...settingsConflicts(settings.data));
  }

  const cpuReq = get("init-cpu-request");
  const memReq = get("init-memory-request");
  const cpuLim = get("init-cpu-limit");
  const memLim = get("init-memory-limit");
  const injectorInput = {
    image: get("image"),
    imagePullPolicy: get("image-pull-policy"),
    defaultRegion: get("default-region"),
    defaultFormat: get("default-format"),
    defaultOutputDir: get("default-output-dir"),
    allowedOutputRoots: get("allowed-output-roots")
      ?.split(",")
      .map((s) => s.trim())
      .filter(Boolean),
    maxSecrets: num("max-secrets"),
    defaultTimeoutSeconds: num("default-timeout-seconds"),
    maxTimeoutSeconds: num("max-timeout-seconds"),
    concurrency: num("concurrency"),
    volumeSizeLimit: get("volume-size-limit"),
    resources: {
      requests: { cpu: cpuReq ?? "50m", memory: memReq ?? "64Mi" },
      limits: { cpu: cpuLim ?? "500m", memory: memLim ?? "128Mi" },
    },
    defaultUid: num("run-as-user"),
    defaultGid: num("run-as-group"),
    allowNodeIdentity: field("allow-node-identity", Bool),
    batchGetSecretValue: field("batch-get-secret-value", Bool),
  };
  const injectorFlag: Record<string, WebhookOption> = {
    image: "image",
    imagePullPolicy: "image-pull-policy",
    defaultRegion: "default-region",
    defaultFormat: "default-format",
    defaultOutputDir: "default-output-dir",
    allowedOutputRoots: "allowed-output-roots",
    maxSecrets: "max-secrets",
    defaultTimeoutSeconds: "default-timeout-seconds",
    maxTimeoutSeconds: "max-timeout-seconds",
    concurrency: "concurrency",
    volumeSizeLimit: "volume-size-limit",
    defaultUid: "run-as-user",
    defaultGid: "run-as-group",
    allowNodeIdentity: "allow-node-identity",
    batchGetSecretValue: "batch-get-secret-value",
  };
  const injector = InjectorConfigSchema.safeParse(
    Object.fromEntries(Object.entries(injectorInput).filter(([, v]) => v !== undefined && v !== "")),
  );
  if (!injector.success) {
    for (const i of injector.error.issues) {
      const key = String(i.path[0]);
      if (key === "resources") {
        const [, kind, res] = i.path.map(String);
        const flag = `init-${res}-${kind === "requests" ? "request" : "limit"}` as WebhookOption;
        problems.push(`${where(flag)}: ${i.message}`);
        continue;
      }
      const flag = injectorFlag[key];
      problems.push(
        `${flag ? where(flag) : key}: ${key === "image" && i.code === "invalid_type" ? "is required (the init container's image, normally this webhook's own image)" : i.message}`,
      );
    }
  }
  if (problems.length > 0 || !settings.success || !injector.success) {
    throw new ConfigError(`invalid webhook configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
  return { ...settings.data, injector: injector.data };
}
