// `sm-injector webhook` configuration: one flag table (src/cli/flags.ts), flags win over environment
// variables (SM_INJECTOR_*), and a bad value stops the server at start-up with every problem
// listed, each naming the flag and the variable. The injector flags are shared with `inject`.
import { z } from "zod";
import {
  type FlagValues,
  flag,
  flagName,
  kubeconfigFlag,
  logLevelFlag,
  parseFlags,
  pickFlags,
  wholeNumber,
} from "../cli/flags.ts";
import {
  DEFAULT_INIT_RESOURCES,
  type InjectorConfig,
  InjectorConfigSchema,
  Quantity,
} from "../contract/config.ts";

const S = InjectorConfigSchema.shape;
const R = DEFAULT_INIT_RESOURCES;

/** What every injection gets (InjectorConfig): the webhook's and `inject`'s flags alike. */
export const INJECTOR_FLAGS = {
  image: flag({
    env: "SM_INJECTOR_IMAGE",
    input: "text",
    schema: S.image,
    value: "IMAGE",
    help: "image of the injected init container (normally the webhook's own)",
    required: "is required (the init container's image, normally this webhook's own image)",
  }),
  "image-pull-policy": flag({
    env: "SM_INJECTOR_IMAGE_PULL_POLICY",
    input: "text",
    schema: S.imagePullPolicy,
    value: "POLICY",
    help: "Always, IfNotPresent or Never",
  }),
  "default-region": flag({
    env: "SM_INJECTOR_DEFAULT_REGION",
    input: "text",
    schema: S.defaultRegion,
    value: "REGION",
    help: "region when neither the pod nor an ARN gives one",
  }),
  "default-format": flag({
    env: "SM_INJECTOR_DEFAULT_FORMAT",
    input: "text",
    schema: S.defaultFormat,
    value: "FORMAT",
    help: "shell, dotenv, json or files",
  }),
  "default-output-dir": flag({
    env: "SM_INJECTOR_DEFAULT_OUTPUT_DIR",
    input: "text",
    schema: S.defaultOutputDir,
    value: "DIR",
    help: "where the env file goes when the pod does not say",
  }),
  "allowed-output-roots": flag({
    env: "SM_INJECTOR_ALLOWED_OUTPUT_ROOTS",
    input: "list",
    schema: S.allowedOutputRoots,
    help: "comma-separated roots an output-dir annotation must lie under",
  }),
  "max-secrets": flag({
    env: "SM_INJECTOR_MAX_SECRETS",
    input: "int",
    schema: S.maxSecrets,
    help: "distinct secrets per pod",
  }),
  "default-timeout-seconds": flag({
    env: "SM_INJECTOR_DEFAULT_TIMEOUT_SECONDS",
    input: "int",
    schema: S.defaultTimeoutSeconds,
    help: "fetch deadline",
  }),
  "max-timeout-seconds": flag({
    env: "SM_INJECTOR_MAX_TIMEOUT_SECONDS",
    input: "int",
    schema: S.maxTimeoutSeconds,
    help: "largest timeout-seconds a pod may ask for",
  }),
  concurrency: flag({
    env: "SM_INJECTOR_CONCURRENCY",
    input: "int",
    schema: S.concurrency,
    help: "Secrets Manager calls in flight per pod",
  }),
  "batch-get-secret-value": flag({
    env: "SM_INJECTOR_BATCH_GET_SECRET_VALUE",
    input: "bool",
    schema: S.batchGetSecretValue,
    help: "true: init containers read up to 20 secrets per call (needs secretsmanager:BatchGetSecretValue)",
  }),
  "volume-size-limit": flag({
    env: "SM_INJECTOR_VOLUME_SIZE_LIMIT",
    input: "text",
    schema: S.volumeSizeLimit,
    value: "QUANTITY",
    help: "memory volume size limit",
  }),
  "init-cpu-request": flag({
    env: "SM_INJECTOR_INIT_CPU_REQUEST",
    input: "text",
    schema: Quantity.default(R.requests.cpu),
    value: "QUANTITY",
    help: "init container CPU request",
  }),
  "init-memory-request": flag({
    env: "SM_INJECTOR_INIT_MEMORY_REQUEST",
    input: "text",
    schema: Quantity.default(R.requests.memory),
    value: "QUANTITY",
    help: "init container memory request",
  }),
  "init-cpu-limit": flag({
    env: "SM_INJECTOR_INIT_CPU_LIMIT",
    input: "text",
    schema: Quantity.default(R.limits.cpu),
    value: "QUANTITY",
    help: "init container CPU limit",
  }),
  "init-memory-limit": flag({
    env: "SM_INJECTOR_INIT_MEMORY_LIMIT",
    input: "text",
    schema: Quantity.default(R.limits.memory),
    value: "QUANTITY",
    help: "init container memory limit",
  }),
  "run-as-user": flag({
    env: "SM_INJECTOR_RUN_AS_USER",
    input: "int",
    schema: S.defaultUid,
    value: "UID",
    help: "init container uid when the app's is unknown",
  }),
  "run-as-group": flag({
    env: "SM_INJECTOR_RUN_AS_GROUP",
    input: "int",
    schema: S.defaultGid,
    value: "GID",
    help: "init container gid when no shared group is known",
  }),
  "allow-node-identity": flag({
    env: "SM_INJECTOR_ALLOW_NODE_IDENTITY",
    input: "bool",
    schema: S.allowNodeIdentity,
    help: "true lets the init container fall back to the node's instance role",
  }),
};

/** The injector flags' values as the InjectorConfig every injection reads. */
export function injectorConfigOf(v: FlagValues<typeof INJECTOR_FLAGS>): InjectorConfig {
  const { initCpuRequest, initMemoryRequest, initCpuLimit, initMemoryLimit, runAsUser, runAsGroup, ...same } =
    v;
  // Each value is already valid on its own; this only assembles (and would catch a renamed field).
  return InjectorConfigSchema.parse({
    ...same,
    defaultUid: runAsUser,
    defaultGid: runAsGroup,
    resources: {
      requests: { cpu: initCpuRequest, memory: initMemoryRequest },
      limits: { cpu: initCpuLimit, memory: initMemoryLimit },
    },
  });
}

/** The webhook's own settings: serving, look-ups, limits on clients. */
const SERVER_FLAGS = {
  port: flag({
    env: "SM_INJECTOR_PORT",
    input: "int",
    schema: wholeNumber(0, 65535).default(8443),
    help: "HTTPS port",
  }),
  host: flag({
    env: "SM_INJECTOR_HOST",
    input: "text",
    schema: z.string().min(1).default("0.0.0.0"),
    value: "ADDRESS",
    help: "listen address",
  }),
  "tls-cert-file": flag({
    env: "SM_INJECTOR_TLS_CERT_FILE",
    input: "text",
    schema: z.string().min(1),
    value: "FILE",
    help: "serving certificate (PEM); reloaded when it changes",
    required: "is required (the serving certificate, PEM)",
  }),
  "tls-key-file": flag({
    env: "SM_INJECTOR_TLS_KEY_FILE",
    input: "text",
    schema: z.string().min(1),
    value: "FILE",
    help: "serving key (PEM)",
    required: "is required (the serving key, PEM)",
  }),
  "tls-reload-interval-seconds": flag({
    env: "SM_INJECTOR_TLS_RELOAD_INTERVAL_SECONDS",
    input: "int",
    schema: wholeNumber(1, 3600).default(10),
    help: "how often to check the certificate files",
  }),
};

const LOOKUP_AND_LIMIT_FLAGS = {
  "namespace-policy": flag({
    env: "SM_INJECTOR_NAMESPACE_POLICY",
    input: "bool",
    schema: z.boolean().default(true),
    help: "true enforces Namespaces' sm-injector.io/allowed-secrets; false skips the look-up",
  }),
  kubeconfig: kubeconfigFlag,
  "serviceaccount-cache-seconds": flag({
    env: "SM_INJECTOR_SERVICEACCOUNT_CACHE_SECONDS",
    input: "int",
    schema: wholeNumber(0, 3600).default(30),
    help: "cache ServiceAccount and Namespace look-ups",
  }),
  "body-limit-bytes": flag({
    env: "SM_INJECTOR_BODY_LIMIT_BYTES",
    input: "int",
    schema: wholeNumber(1024, 64 * 1024 * 1024).default(3 * 1024 * 1024),
    help: "largest AdmissionReview accepted",
  }),
  "request-timeout-seconds": flag({
    env: "SM_INJECTOR_REQUEST_TIMEOUT_SECONDS",
    input: "int",
    schema: wholeNumber(1, 30).default(4),
    help: "TLS handshake, request head and body must arrive within this; idle connections close after it (keep it below the webhook's timeoutSeconds)",
  }),
  "max-connections": flag({
    env: "SM_INJECTOR_MAX_CONNECTIONS",
    input: "int",
    schema: wholeNumber(1, 1_000_000).default(512),
    help: "open connections at most",
  }),
  "max-in-flight-body-bytes": flag({
    env: "SM_INJECTOR_MAX_IN_FLIGHT_BODY_BYTES",
    input: "int",
    schema: wholeNumber(2048, 1024 * 1024 * 1024).default(32 * 1024 * 1024),
    help: "bytes of request bodies held at once; more are refused with 503 (at least twice --body-limit-bytes)",
  }),
  "client-ca-file": flag({
    env: "SM_INJECTOR_CLIENT_CA_FILE",
    input: "text",
    schema: z.string().min(1).optional(),
    value: "FILE",
    help: "CA (PEM) of the API server's client certificate: /mutate then requires one (probes and /metrics do not); reloaded when it changes",
  }),
  "client-allowed-names": flag({
    env: "SM_INJECTOR_CLIENT_ALLOWED_NAMES",
    input: "list",
    schema: z.array(z.string()).optional(),
    help: "comma-separated CNs or DNS/URI SANs of accepted client certificates (default: any the CA signed)",
  }),
  "log-level": logLevelFlag,
  "shutdown-delay-seconds": flag({
    env: "SM_INJECTOR_SHUTDOWN_DELAY_SECONDS",
    input: "int",
    schema: wholeNumber(0, 300).default(0),
    help: "keep serving this long after SIGTERM, unready",
  }),
};

/** Every flag of `sm-injector webhook`; --help and the README's flag table are checked against it. */
export const WEBHOOK_FLAGS = { ...SERVER_FLAGS, ...INJECTOR_FLAGS, ...LOOKUP_AND_LIMIT_FLAGS };
const SETTINGS_FLAGS = { ...SERVER_FLAGS, ...LOOKUP_AND_LIMIT_FLAGS };

type ServerSettings = FlagValues<typeof SETTINGS_FLAGS>;

export interface WebhookConfig extends ServerSettings {
  injector: InjectorConfig;
}

export class ConfigError extends Error {}

/** Problems between settings that are each valid alone. */
function settingsConflicts(s: ServerSettings): string[] {
  const problems: string[] = [];
  const F = LOOKUP_AND_LIMIT_FLAGS;
  // Large bodies may use half the budget (body-budget.ts): one body at the limit must fit in it.
  if (s.maxInFlightBodyBytes < 2 * s.bodyLimitBytes) {
    problems.push(
      `${flagName("max-in-flight-body-bytes", F["max-in-flight-body-bytes"])}: must be at least twice --body-limit-bytes (${2 * s.bodyLimitBytes}), got ${s.maxInFlightBodyBytes}`,
    );
  }
  if (s.clientAllowedNames?.length && !s.clientCaFile) {
    problems.push(
      `${flagName("client-allowed-names", F["client-allowed-names"])}: needs ${flagName("client-ca-file", F["client-ca-file"])}, the CA that signs the API server's client certificate`,
    );
  }
  return problems;
}

/** Reads flags and SM_INJECTOR_* variables; throws ConfigError listing every bad value. */
export function loadWebhookConfig(argv: string[], env: NodeJS.ProcessEnv): WebhookConfig {
  const { values, problems } = parseFlags(WEBHOOK_FLAGS, argv, env);
  if (problems.length === 0) problems.push(...settingsConflicts(values));
  if (problems.length > 0)
    throw new ConfigError(
      `invalid webhook configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}\nRun \`sm-injector webhook --help\` for the flags.`,
    );
  const settings = pickFlags(SETTINGS_FLAGS, values);
  const injector = injectorConfigOf(pickFlags(INJECTOR_FLAGS, values));
  return { ...settings, injector };
}
