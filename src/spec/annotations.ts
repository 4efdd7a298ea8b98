// The annotation contract: every label and annotation sm-injector reads or writes, with what it
// does and its default. The README's annotation table is checked against this list by a test, so
// this file is the single source of truth for the user-facing interface.

export const PREFIX = "sm-injector.io/";

/** Pod label that opts a pod in. It routes the pod to the webhook via the objectSelector. */
export const INJECT_LABEL = `${PREFIX}inject`;

/** Written by the webhook on injected pods; never read as input. */
export const STATUS_ANNOTATION = `${PREFIX}status`;

export interface AnnotationDoc {
  /** Key after the prefix; a trailing `.` means "followed by a user-chosen suffix". */
  readonly key: string;
  readonly example: string;
  readonly default: string;
  readonly description: string;
}

/** Keys of the one-line forms: `env.<VAR>` and `env-from` / `env-from.<label>`. */
export const ENV_KEY = "env.";
export const ENV_FROM_KEY = "env-from";

export const ANNOTATIONS = {
  env: {
    key: "env.<VAR>",
    example: "sm-injector.io/env.DB_PASSWORD: erp/production/rds#password",
    default: "-",
    description:
      "One variable from one secret. Value is a secret reference: `NAME_OR_ARN[?versionStage=S|versionId=V][&optional=true][#json-key]`.",
  },
  envFrom: {
    key: "env-from[.<label>]",
    example: "sm-injector.io/env-from.db: erp/production/database?prefix=DB_",
    default: "-",
    description:
      "Every key of a JSON secret as one variable each, optionally with `prefix=`. The label only tells several such annotations apart.",
  },
  secrets: {
    key: "secrets",
    example:
      "sm-injector.io/secrets: |\n  - secret: erp/production/rds\n    key: password\n    env: DB_PASSWORD",
    default: "-",
    description:
      "Structured form: a YAML or JSON list of entries with `secret`, `env` or (`prefix`, `keys`, `rename`), `key`, `versionStage`, `versionId`, `region`, `optional`.",
  },
  region: {
    key: "region",
    example: "sm-injector.io/region: eu-west-1",
    default: "the container's AWS_REGION, else the webhook's default region",
    description: "Region for secrets given by name (an ARN always uses its own region).",
  },
  format: {
    key: "format",
    example: "sm-injector.io/format: dotenv",
    default: "shell",
    description:
      "Output format: `shell` (`export K='v'`, for `.`), `dotenv` (python-dotenv, pydantic-settings `env_file`, Node `--env-file`), `json`, or `files` (one file per variable, for pydantic-settings `secrets_dir`).",
  },
  outputDir: {
    key: "output-dir",
    example: "sm-injector.io/output-dir: /run/secrets/app",
    default: "/run/sm-injector",
    description:
      "Where the memory-backed volume is mounted; must lie under one of the webhook's allowed roots.",
  },
  fileName: {
    key: "file-name",
    example: "sm-injector.io/file-name: app.env",
    default: "`env` (`env.json` for json)",
    description: "Name of the output file in the output directory (not used by `files`).",
  },
  fileMode: {
    key: "file-mode",
    example: 'sm-injector.io/file-mode: "0440"',
    default: "auto",
    description:
      "`0400`, `0440` or `0444`. `auto` picks 0400 when the init container can run as the app's user, 0440 with a shared group (fsGroup/runAsGroup), else 0444.",
  },
  containers: {
    key: "containers",
    example: "sm-injector.io/containers: api,worker",
    default: "all containers",
    description: "Comma-separated containers that get the volume mount and the file path variable.",
  },
  wrapCommand: {
    key: "wrap-command",
    example: 'sm-injector.io/wrap-command: "true"',
    default: "false",
    description:
      "`true` (all targeted containers) or a comma-separated list: rewrite `command` to source the env file first. Needs an explicit `command` and the shell format.",
  },
  initPosition: {
    key: "init-position",
    example: "sm-injector.io/init-position: first",
    default: "last",
    description:
      "`last` runs the fetch after existing init containers (mesh and network init first); `first` runs it before them.",
  },
  timeout: {
    key: "timeout-seconds",
    example: 'sm-injector.io/timeout-seconds: "30"',
    default: "60",
    description: "Deadline for all fetches of the pod, retries included; the pod fails to start after it.",
  },
  restartOnRotation: {
    key: "restart-on-rotation",
    example: 'sm-injector.io/restart-on-rotation: "true"',
    default: "false",
    description:
      "`true`: when a secret the pod read gets a new version, `sm-injector rotation` gives its Deployment, StatefulSet or DaemonSet a rolling restart.",
  },
} as const satisfies Record<string, AnnotationDoc>;

/** Annotation keys (after the prefix) that take a fixed name; the `env.` and `env-from` families are matched separately. */
export const FIXED_KEYS = {
  secrets: "secrets",
  region: "region",
  format: "format",
  outputDir: "output-dir",
  fileName: "file-name",
  fileMode: "file-mode",
  containers: "containers",
  wrapCommand: "wrap-command",
  initPosition: "init-position",
  timeout: "timeout-seconds",
  restartOnRotation: "restart-on-rotation",
} as const;

/** Names the webhook gives to what it adds to a pod. */
export const INIT_CONTAINER_NAME = "sm-injector-fetch";
export const VOLUME_NAME = "sm-injector-secrets";
export const AWS_TOKEN_VOLUME_NAME = "sm-injector-aws-iam-token";
/** Added to targeted containers: the env file path (or the directory for `files`). */
export const ENV_FILE_VAR = "SM_INJECTOR_ENV_FILE";
export const SECRETS_DIR_VAR = "SM_INJECTOR_SECRETS_DIR";
