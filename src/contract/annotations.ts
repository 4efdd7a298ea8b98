// The annotation contract: every label and annotation sm-injector reads or writes, with what it
// does and its default. The README's annotation table is checked against ANNOTATIONS by a test, and
// every key lookup (FIXED_KEYS, annotationOf, KNOWN_KEYS, the rotation opt-in) is derived from it,
// so this file is the single source of truth for the user-facing interface.

import { MAX_FETCH_ENTRIES } from "./fetch-spec.ts";
import { TEMPLATE_FILTER_NAMES } from "./template-filters.ts";

export const PREFIX = "sm-injector.io/";

/** Pod label that opts a pod in. It routes the pod to the webhook via the objectSelector. */
export const INJECT_LABEL = `${PREFIX}inject`;

/** Written by the webhook on injected pods; never read as input. */
export const STATUS_ANNOTATION = `${PREFIX}status`;

/**
 * How an annotation key is matched (after the prefix): `fixed` is the whole key; a family is a stem
 * followed by a user-chosen suffix, `env.<VAR>` and `template.<VAR>` (the suffix is required: the
 * variable) or `env-from[.<label>]` (optional: it only tells several apart).
 */
export type AnnotationKind = "fixed" | "env-family" | "env-from-family" | "template-family";

export interface AnnotationEntry {
  /** After the prefix: the whole key of a `fixed` annotation, the stem of a family. */
  readonly key: string;
  readonly kind: AnnotationKind;
  readonly default: string;
  readonly description: string;
  readonly example: string;
}

/** Every annotation a pod may carry, in the README's order. The one source of the contract. */
export const ANNOTATIONS = {
  env: {
    key: "env",
    kind: "env-family",
    default: "-",
    description:
      "One variable from one secret. Value is a secret reference: `NAME_OR_ARN[?versionStage=S|versionId=V][&optional=true][#json-key]`.",
    example: "sm-injector.io/env.DB_PASSWORD: erp/production/rds#password",
  },
  envFrom: {
    key: "env-from",
    kind: "env-from-family",
    default: "-",
    description:
      "Every key of a JSON secret as one variable each, optionally with `prefix=`. The label only tells several such annotations apart.",
    example: "sm-injector.io/env-from.db: erp/production/database?prefix=DB_",
  },
  template: {
    key: "template",
    kind: "template-family",
    default: "-",
    description: `One variable composed of text and secret values: \`\${REFERENCE}\` or \`\${REFERENCE|FILTER}\` with the \`env.\` reference syntax and FILTER one of ${TEMPLATE_FILTER_NAMES.map((f) => `\`${f}\``).join(", ")}; \`$$\` is a literal \`$\`. Never optional.`,
    example:
      // biome-ignore lint/suspicious/noTemplateCurlyInString: ${…} is the template syntax
      "sm-injector.io/template.DATABASE_URL: postgresql://${erp/production/rds#username|urlencode}:${erp/production/rds#password|urlencode}@${erp/production/rds#host}:${erp/production/rds#port}/${erp/production/rds#dbname|urlencode}",
  },
  secrets: {
    key: "secrets",
    kind: "fixed",
    default: "-",
    description:
      "Structured form: a YAML or JSON list of entries with `secret`, `env` or (`prefix`, `keys`, `rename`), `key`, `versionStage`, `versionId`, `region`, `optional`; or `env` with `template` (and `region`).",
    example:
      "sm-injector.io/secrets: |\n  - secret: erp/production/rds\n    key: password\n    env: DB_PASSWORD",
  },
  region: {
    key: "region",
    kind: "fixed",
    default: "the container's AWS_REGION, else the webhook's default region",
    description: "Region for secrets given by name (an ARN always uses its own region).",
    example: "sm-injector.io/region: eu-west-1",
  },
  format: {
    key: "format",
    kind: "fixed",
    default: "shell",
    description:
      "Output format: `shell` (`export K='v'`, for `.`), `dotenv` (python-dotenv, pydantic-settings `env_file`, Node `--env-file`), `json`, or `files` (one file per variable, for pydantic-settings `secrets_dir`).",
    example: "sm-injector.io/format: dotenv",
  },
  outputDir: {
    key: "output-dir",
    kind: "fixed",
    default: "/run/sm-injector",
    description:
      "Where the memory-backed volume is mounted; must lie under one of the webhook's allowed roots.",
    example: "sm-injector.io/output-dir: /run/secrets/app",
  },
  fileName: {
    key: "file-name",
    kind: "fixed",
    default: "`env` (`env.json` for json)",
    description: "Name of the output file in the output directory (not used by `files`).",
    example: "sm-injector.io/file-name: app.env",
  },
  fileMode: {
    key: "file-mode",
    kind: "fixed",
    default: "auto",
    description:
      "`0400`, `0440` or `0444`. `auto` picks 0400 when the init container can run as the app's user, 0440 with a shared group (fsGroup/runAsGroup), else 0444.",
    example: 'sm-injector.io/file-mode: "0440"',
  },
  containers: {
    key: "containers",
    kind: "fixed",
    default: "all containers",
    description:
      "Comma-separated containers that get the volume mount and the file path variable; init containers too (a migration), which the fetch then runs before.",
    example: "sm-injector.io/containers: api,migrate",
  },
  wrapCommand: {
    key: "wrap-command",
    kind: "fixed",
    default: "false",
    description:
      "`true` (all targeted containers) or a comma-separated list: rewrite `command` to source the env file first. Needs an explicit `command` and the shell format.",
    example: 'sm-injector.io/wrap-command: "true"',
  },
  initPosition: {
    key: "init-position",
    kind: "fixed",
    default: "last",
    description:
      "`last` runs the fetch after existing init containers (mesh and network init first), but before the first one `containers` lists; `first` runs it before them all.",
    example: "sm-injector.io/init-position: first",
  },
  timeout: {
    key: "timeout-seconds",
    kind: "fixed",
    default: "60",
    description: "Deadline for all fetches of the pod, retries included; the pod fails to start after it.",
    example: 'sm-injector.io/timeout-seconds: "30"',
  },
  restartOnRotation: {
    key: "restart-on-rotation",
    kind: "fixed",
    default: "false",
    description:
      "`true`: when a secret the pod read gets a new version, `sm-injector rotation` gives its Deployment, StatefulSet or DaemonSet a rolling restart.",
    example: 'sm-injector.io/restart-on-rotation: "true"',
  },
} as const satisfies Record<string, AnnotationEntry>;

export type AnnotationName = keyof typeof ANNOTATIONS;

/** The annotations with one fixed key (every one but the `env.`, `template.` and `env-from` families). */
export type FixedAnnotation = {
  [K in AnnotationName]: (typeof ANNOTATIONS)[K]["kind"] extends "fixed" ? K : never;
}[AnnotationName];

const NAMES = Object.keys(ANNOTATIONS) as AnnotationName[];

/** Fixed annotation → its key after the prefix, e.g. `FIXED_KEYS.outputDir` is "output-dir". */
export const FIXED_KEYS = Object.fromEntries(
  NAMES.filter((n) => ANNOTATIONS[n].kind === "fixed").map((n) => [n, ANNOTATIONS[n].key]),
) as { readonly [K in FixedAnnotation]: (typeof ANNOTATIONS)[K]["key"] };

const BY_FIXED_KEY: ReadonlyMap<string, FixedAnnotation> = new Map(
  (Object.keys(FIXED_KEYS) as FixedAnnotation[]).map((n) => [FIXED_KEYS[n], n]),
);

/** Key prefixes of the families: `env.<VAR>`, and `env-from` alone or `env-from.<label>`. */
const ENV_KEY = `${ANNOTATIONS.env.key}.`;
const TEMPLATE_KEY = `${ANNOTATIONS.template.key}.`;
const ENV_FROM_KEY = ANNOTATIONS.envFrom.key;

/** A key as the README and messages write it: `env.<VAR>`, `env-from[.<label>]`, `format`. */
export function documentedKey(entry: AnnotationEntry): string {
  switch (entry.kind) {
    case "fixed":
      return entry.key;
    case "env-family":
    case "template-family":
      return `${entry.key}.<VAR>`;
    case "env-from-family":
      return `${entry.key}[.<label>]`;
  }
}

/**
 * Which annotation a key (after the prefix) is, and its suffix for a family (the variable of
 * `env.<VAR>` and `template.<VAR>`, the label of `env-from.<label>`, "" for `env-from` alone);
 * undefined when unknown.
 * The status annotation is not in the table: it is written, never read.
 */
export function annotationOf(key: string): { name: AnnotationName; suffix: string } | undefined {
  if (key.startsWith(ENV_KEY)) return { name: "env", suffix: key.slice(ENV_KEY.length) };
  if (key.startsWith(TEMPLATE_KEY)) return { name: "template", suffix: key.slice(TEMPLATE_KEY.length) };
  if (key === ENV_FROM_KEY) return { name: "envFrom", suffix: "" };
  if (key.startsWith(`${ENV_FROM_KEY}.`))
    return { name: "envFrom", suffix: key.slice(ENV_FROM_KEY.length + 1) };
  const fixed = BY_FIXED_KEY.get(key);
  return fixed === undefined ? undefined : { name: fixed, suffix: "" };
}

/** Pod template annotation: "true" opts the workload in to restarts when a secret it reads rotates. */
export const RESTART_ON_ROTATION_ANNOTATION = `${PREFIX}${ANNOTATIONS.restartOnRotation.key}` as const;

/**
 * The keys an "unknown annotation" message lists: the fixed ones in table order, then the
 * families, then the status annotation (known, though never read).
 */
export const KNOWN_KEYS: readonly string[] = [
  ...Object.values(FIXED_KEYS),
  documentedKey(ANNOTATIONS.env),
  documentedKey(ANNOTATIONS.template),
  ANNOTATIONS.envFrom.key,
  STATUS_ANNOTATION.slice(PREFIX.length),
];

/** Names the webhook gives to what it adds to a pod. */
export const INIT_CONTAINER_NAME = "sm-injector-fetch";
export const VOLUME_NAME = "sm-injector-secrets";
export const AWS_TOKEN_VOLUME_NAME = "sm-injector-aws-iam-token";
/** Added to targeted containers: the env file path (or the directory for `files`). */
export const ENV_FILE_VAR = "SM_INJECTOR_ENV_FILE";
export const SECRETS_DIR_VAR = "SM_INJECTOR_SECRETS_DIR";

/**
 * Where the webhook mounts the projected token it adds for IRSA when the app has none yet
 * (distinct from EKS's own path, so the two never clash). An output-dir must not overlap it.
 */
export const OWN_TOKEN_DIR = "/var/run/secrets/sm-injector/eks.amazonaws.com/serviceaccount";

// Admission limits. Every pod is tenant input and the webhook answers for the whole cluster, so the
// cost of reading a pod's annotations is bounded BEFORE anything is parsed: a pod over a limit gets
// one denial naming the limit, at the cost of measuring string lengths. The README's limits table is
// generated from (or checked against) these constants.

/**
 * Bytes of an sm-injector annotation key. Kubernetes allows 63 characters after a key's prefix, so a
 * longer key could never be stored; it is refused before it is compared with anything.
 */
export const MAX_ANNOTATION_KEY_BYTES = PREFIX.length + 63;

/**
 * Bytes of one sm-injector annotation value. The structured form with the init container's maximum
 * of entries, written as people write it, takes about 40 KiB.
 */
export const MAX_ANNOTATION_VALUE_BYTES = 64 * 1024;

/**
 * Bytes of all sm-injector annotations of a pod together, keys and values. The compiled spec must
 * fit in one environment variable of 128 KiB, and Kubernetes allows 256 KiB for all of a pod's
 * annotations.
 */
export const MAX_ANNOTATIONS_TOTAL_BYTES = 128 * 1024;

/**
 * Bytes of a structured form that is not in the plain form (one `field: value` per line, which a
 * linear reader takes up to MAX_ANNOTATION_VALUE_BYTES) and so goes to the general YAML parser,
 * which costs up to ~5 µs per byte: 8 KiB stays under 50 ms.
 */
export const MAX_YAML_BYTES = 8 * 1024;

/** Nesting of `[` and `{` in the structured form (it needs 3: list, entry, keys or rename). */
export const MAX_YAML_NESTING = 8;

/**
 * Characters of indentation and `- ` before a line's content in the structured form: block
 * nesting costs the YAML parser stack and time per level; the form needs about 8.
 */
export const MAX_YAML_INDENT = 64;

/** Number of sm-injector annotations: one per entry at most, plus every setting and the status. */
export const MAX_ANNOTATION_COUNT = MAX_FETCH_ENTRIES + Object.keys(FIXED_KEYS).length + 1;

/** `keys` items, or `rename` pairs, of one structured entry (each becomes a variable). */
export const MAX_KEYS_PER_ENTRY = 256;

/**
 * Bytes of one JSON key: `#key`, `key:`, a `keys` item or a `rename` key. The spec travels in one
 * environment variable (128 KiB), so each of its parts is bounded.
 */
export const MAX_JSON_KEY_BYTES = 1024;

/** Bytes of a variable name: `env`, a `rename` value, a `prefix`. */
export const MAX_VARIABLE_NAME_BYTES = 256;

/** Bytes of any other string field (a full ARN is at most 2,048 characters). */
export const MAX_FIELD_BYTES = 2048;

/** Problems listed in one denial; the rest are counted ("and 12 more problems"). */
export const MAX_REPORTED_PROBLEMS = 20;

/** Characters of tenant text quoted in one message; longer text is cut, and its length given. */
export const MAX_QUOTED_CHARS = 100;

/** Characters of one problem message, whatever it quotes. */
export const MAX_PROBLEM_CHARS = 1024;

/** "Did you mean" is only worked out for unknown keys this short (edit distance is quadratic). */
export const MAX_SUGGESTED_KEY_CHARS = 32;

/** Patterns in a Namespace's sm-injector.io/allowed-secrets (more makes the policy invalid). */
export const MAX_POLICY_PATTERNS = 256;

/** Characters of one policy pattern (a full ARN pattern fits in 600). */
export const MAX_POLICY_PATTERN_CHARS = 1024;

/** UTF-8 size of a string, without encoding it. */
export function utf8Bytes(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

/** 1400043 → "1,400,043". */
export function formatCount(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+$)/g, ",");
}

/** 65536 → "64 KiB"; other sizes in bytes. */
export function formatSize(bytes: number): string {
  return bytes % 1024 === 0 ? `${formatCount(bytes / 1024)} KiB` : `${formatCount(bytes)} bytes`;
}

/**
 * Tenant text as messages quote it: JSON-escaped (quotes, newlines, control characters, lone
 * surrogates) and cut to MAX_QUOTED_CHARS, with the full length after a cut. Every message that
 * repeats what a pod said goes through here, so a message stays one short line.
 */
export function quote(text: string, max = MAX_QUOTED_CHARS): string {
  if (text.length <= max) return JSON.stringify(text);
  const end = text.charCodeAt(max - 1) >= 0xd800 && text.charCodeAt(max - 1) <= 0xdbff ? max - 1 : max;
  return `${JSON.stringify(text.slice(0, end))}… (${formatCount(text.length)} characters)`;
}

/**
 * The problems found in a pod, as a denial lists them: the first MAX_REPORTED_PROBLEMS, each cut
 * to MAX_PROBLEM_CHARS, then "and N more problems". `length` counts every problem found.
 */
export class ProblemList {
  private readonly shown: string[] = [];
  private hidden = 0;

  /** `noun`: what the list holds, for the "and N more" line. */
  constructor(private readonly noun = "problem") {}

  push(...messages: string[]): void {
    for (const m of messages) {
      if (this.shown.length < MAX_REPORTED_PROBLEMS)
        this.shown.push(m.length > MAX_PROBLEM_CHARS ? `${m.slice(0, MAX_PROBLEM_CHARS - 1)}…` : m);
      else this.hidden++;
    }
  }

  get length(): number {
    return this.shown.length + this.hidden;
  }

  /** The messages to show; the last says how many more there were, if any. */
  list(): string[] {
    if (this.hidden === 0) return [...this.shown];
    return [
      ...this.shown,
      `and ${formatCount(this.hidden)} more ${this.noun}${this.hidden === 1 ? "" : "s"}`,
    ];
  }
}
