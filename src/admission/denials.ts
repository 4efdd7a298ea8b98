// Every way admission refuses a pod, as a stable code: the decision carries it, the audit line
// writes it (`denial`), sm_injector_admission_denials_total counts by it, and the README lists it
// (checked by test/unit/readme.test.ts). Messages can improve freely; codes stay. Pure.

export const DENIALS = {
  "malformed-pod": {
    status: 400,
    meaning: "The pod is not one sm-injector can read (a field of the wrong type).",
  },
  "limit-exceeded": {
    status: 400,
    meaning:
      "The pod's `sm-injector.io/` annotations are over a size or count limit, checked before any is parsed.",
  },
  "invalid-annotations": {
    status: 400,
    meaning:
      "An annotation is unknown, malformed or does not fit the pod; each problem names its annotation and the fix.",
  },
  "secret-policy": {
    status: 403,
    meaning: "The Namespace's allowed-secrets or allowed-regions policy refuses a secret the pod asks for.",
  },
  "serviceaccount-lookup": {
    status: 500,
    meaning: "The pod's ServiceAccount (for its IAM role) could not be read from the API server.",
  },
  "namespace-lookup": {
    status: 500,
    meaning: "The pod's Namespace (for its secret policy) could not be read from the API server.",
  },
  "spec-too-large": {
    status: 400,
    meaning: "The compiled spec would not fit in the init container's environment (128 KiB per variable).",
  },
  "too-many-json-values": {
    status: 400,
    meaning: "The AdmissionReview holds more JSON values than the webhook parses; it is refused unread.",
  },
  timeout: {
    status: 500,
    meaning:
      "The review did not finish within `--request-timeout-seconds` (a Kubernetes look-up that hangs).",
  },
  "internal-error": {
    status: 500,
    meaning: "An unexpected exception; the pod is refused so that it never starts without its secrets.",
  },
} as const satisfies Record<string, { status: 400 | 403 | 500; meaning: string }>;

export type DenialCode = keyof typeof DENIALS;

/** Every code, in the README's order: the only values of the metric's `code` label. */
export const DENIAL_CODES = Object.keys(DENIALS) as DenialCode[];
