// Every way the init container fails, as a coded problem `{code, where, message, hint}` from one
// catalogue (FETCH_PROBLEMS), written as one line per problem on stderr (and so in the pod's events
// and its termination message, the tail of the log): `<where>: <message> — <hint> [<code>]`. The code
// is stable (tests assert it, the README lists it, checked by test/unit/readme.test.ts); the prose
// can improve freely. Never a value: a parser's message, which quotes the text it failed on, is never
// used (see classify in retry.ts), and the text that comes from AWS or Node is cleaned and capped here.
import type { SecretSource } from "../contract/fetch-spec.ts";
import { describeSource } from "./resolve.ts";

/** Every problem code, what it means (the README's troubleshooting table), and the exit status. */
export const FETCH_PROBLEMS = {
  "spec-missing": {
    exit: 2,
    meaning:
      "`SM_INJECTOR_SPEC` is not set: `sm-injector fetch` runs only as the init container the webhook injects.",
  },
  "spec-invalid": {
    exit: 2,
    meaning:
      "`SM_INJECTOR_SPEC` is not this version's: the webhook and the init container run different sm-injector versions (use the webhook's own image).",
  },
  "secret-not-found": {
    exit: 1,
    meaning:
      "No such secret, version id or stage in that region (`ResourceNotFoundException`); names are case-sensitive.",
  },
  "access-denied": {
    exit: 1,
    meaning:
      "The pod's role lacks `secretsmanager:GetSecretValue` on the secret (IAM policy or the secret's resource policy).",
  },
  "kms-denied": {
    exit: 1,
    meaning:
      "The secret's KMS key cannot be used: the role needs `kms:Decrypt` on it, and the key must be enabled.",
  },
  "secret-deleted": {
    exit: 1,
    meaning: "The secret is scheduled for deletion; restore it or reference another.",
  },
  "request-refused": {
    exit: 1,
    meaning: "Secrets Manager refused the request's parameters (name, version id or stage).",
  },
  "malformed-response": {
    exit: 1,
    meaning:
      "An answer from Secrets Manager, STS or the Pod Identity agent could not be parsed (a proxy or `AWS_ENDPOINT_URL` altering it); its text is never shown.",
  },
  "empty-secret": {
    exit: 1,
    meaning:
      "The secret's version has neither `SecretString` nor `SecretBinary`: nothing to write, so nothing is.",
  },
  throttled: {
    exit: 1,
    meaning: "Still throttled after the retries: spread pod starts or raise the account's quota.",
  },
  deadline: {
    exit: 1,
    meaning:
      "No answer within `sm-injector.io/timeout-seconds`: the pod cannot reach AWS (VPC endpoint, NAT, DNS, egress).",
  },
  network: {
    exit: 1,
    meaning: "A network error on every attempt: the pod cannot reach Secrets Manager or STS.",
  },
  "no-region": {
    exit: 1,
    meaning: "No AWS region: set `sm-injector.io/region`, or `AWS_REGION` in the app container.",
  },
  "aws-error": {
    exit: 1,
    meaning: "Any other AWS error; the line names its AWS code and message.",
  },
  "token-unreadable": {
    exit: 1,
    meaning:
      "The IRSA or Pod Identity token file cannot be read: the pod was created before its ServiceAccount was set up.",
  },
  "token-rejected": {
    exit: 1,
    meaning: "STS rejected or found expired the web identity token (OIDC provider, audience, node clock).",
  },
  "assume-role-denied": {
    exit: 1,
    meaning:
      "STS refused to let the pod assume its role: the role's trust policy must allow the cluster's OIDC provider and the ServiceAccount.",
  },
  "irsa-failed": {
    exit: 1,
    meaning: "Any other failure assuming the IRSA role; the line names the STS error.",
  },
  "pod-identity-unavailable": {
    exit: 1,
    meaning:
      "The EKS Pod Identity agent gave no credentials (agent not running, or no association for the ServiceAccount).",
  },
  "static-key-refused": {
    exit: 1,
    meaning: "The access key in `AWS_ACCESS_KEY_ID` was refused; pods should use IRSA or EKS Pod Identity.",
  },
  "no-identity": {
    exit: 1,
    meaning:
      "The pod has no AWS identity: annotate its ServiceAccount (IRSA) or create a Pod Identity association.",
  },
  "key-missing": {
    exit: 1,
    meaning: "The secret's JSON object has no such key (the line lists the keys it has; never a value).",
  },
  "key-ambiguous": {
    exit: 1,
    meaning:
      "The key appears more than once in the secret's JSON object, so which value is meant is ambiguous.",
  },
  "not-json-object": {
    exit: 1,
    meaning: "A key is selected or expanded from a secret that is not a JSON object.",
  },
  "not-unicode": {
    exit: 1,
    meaning: "A key or value holds a lone surrogate escape, which UTF-8 cannot carry.",
  },
  "invalid-variable-name": {
    exit: 1,
    meaning: "A key expanded by `env-from` is not a valid variable name: rename it or select other keys.",
  },
  "duplicate-variable": {
    exit: 1,
    meaning: "Two entries set the same variable: give each a distinct name (rename or prefix).",
  },
  "nul-byte": {
    exit: 1,
    meaning: "A value contains a NUL byte, which no environment variable can carry.",
  },
  "cannot-encode": {
    exit: 1,
    meaning:
      "A variable cannot be written exactly in the chosen format (e.g. `UID` in the shell format, bytes that are not UTF-8 in json).",
  },
  "write-failed": {
    exit: 1,
    meaning: "The output directory cannot be written (missing mount, permissions, volume full).",
  },
  "internal-error": {
    exit: 1,
    meaning: "An unexpected exception; nothing was written. Report it with the init container's log.",
  },
} as const satisfies Record<string, { exit: 1 | 2; meaning: string }>;

export type FetchProblemCode = keyof typeof FETCH_PROBLEMS;

/** Every code, in the README's order. */
export const FETCH_PROBLEM_CODES = Object.keys(FETCH_PROBLEMS) as FetchProblemCode[];

/** One problem of a fetch: which kind, about what (a secret, a variable, a file), what happened, what to do. */
export interface FetchProblem {
  code: FetchProblemCode;
  /** What the problem is about, as the line starts with it (a secret, `template X`, a directory); may be empty. */
  where: string;
  message: string;
  /** What to do about it; may be empty when the message says it. */
  hint: string;
}

/** `<where>: <message> — <hint> [<code>]`: the line on stderr. */
export function problemLine(p: FetchProblem): string {
  return `${p.where ? `${p.where}: ` : ""}${p.message}${p.hint ? ` — ${p.hint}` : ""} [${p.code}]`;
}

/** A problem line built in one call (for the places that have the words at hand). */
export function problem(code: FetchProblemCode, where: string, message: string, hint = ""): string {
  return problemLine({ code, where, message, hint });
}

/** The code a problem line carries, or undefined (tests, and anything that reads the lines). */
export function problemCode(line: string): FetchProblemCode | undefined {
  const m = / \[([a-z-]+)\]$/.exec(line);
  return m && Object.hasOwn(FETCH_PROBLEMS, m[1] as string) ? (m[1] as FetchProblemCode) : undefined;
}

/** An answer the SDK could not parse (JSON from Secrets Manager, XML from STS). */
export const MALFORMED_CODE = "MalformedResponse";
/** A GetSecretValue answer (or batch entry) with neither SecretString nor SecretBinary. */
export const EMPTY_CODE = "EmptySecretValue";

/** The most characters of an AWS or Node message an error line quotes. */
export const MESSAGE_LIMIT = 200;
const CODE = /^[A-Za-z0-9._:#-]{1,64}$/;

/**
 * Control characters (C0, DEL, C1), Unicode line and paragraph separators, bidirectional overrides
 * and lone surrogates: what could break a line, rewrite a terminal or disguise the text around it.
 */
const UNSAFE =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it removes
  /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * Text from AWS, a network library or any other outside source, made fit for one log line: unsafe
 * characters become spaces, runs of spaces one, and at most `limit` characters are kept ("…" marks
 * a cut). Linear in the input, whose size AWS, not we, decides (a 2 MB message has been seen).
 */
export function cleanText(text: string, limit = MESSAGE_LIMIT): string {
  // Only a bounded prefix is cleaned: the rest would be cut anyway.
  const head = text.slice(0, limit * 4 + 16);
  const clean = head.replace(UNSAFE, " ").replace(/ {2,}/g, " ").trim();
  const cut = clean.length > limit || head.length < text.length;
  if (!cut) return clean;
  // Never end on half of a surrogate pair.
  let end = Math.min(limit, clean.length);
  const last = clean.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${clean.slice(0, end)}…`;
}

/** An error code as AWS spells them (letters, digits, . _ : # -), or "Error" for anything else. */
export function cleanCode(code: string): string {
  return CODE.test(code) ? code : "Error";
}

/** An AWS, credential or network failure, classified by the AWS edge. Code and message are cleaned. */
export class AwsCallError extends Error {
  /** The AWS error code (ThrottlingException), the Node error code (ECONNRESET) or DeadlineExceeded. */
  readonly code: string;

  constructor(
    code: string,
    message: string,
    /** Whether getting credentials (STS, the Pod Identity agent) or the GetSecretValue call failed. */
    readonly phase: "credentials" | "call",
    readonly attempts: number,
    /** True when the overall deadline ended the retries. */
    readonly atDeadline = false,
  ) {
    super(cleanText(message));
    this.code = cleanCode(code);
  }
}

/** The identity the SDK's default chain will use, as a user recognises it. */
export interface Identity {
  readonly description: string;
  readonly kind: "static" | "irsa" | "pod-identity" | "default-chain";
  /** IRSA's token file or Pod Identity's authorization token file. */
  readonly tokenFile?: string;
  /** Pod Identity's credentials endpoint (the node's agent). */
  readonly endpoint?: string;
}

/** Mirrors the order of the SDK's default chain: environment keys, web identity, container provider. */
export function identityFromEnv(env: NodeJS.ProcessEnv): Identity {
  if (env.AWS_ACCESS_KEY_ID) return { description: "the access key in AWS_ACCESS_KEY_ID", kind: "static" };
  if (env.AWS_ROLE_ARN && env.AWS_WEB_IDENTITY_TOKEN_FILE)
    return { description: env.AWS_ROLE_ARN, kind: "irsa", tokenFile: env.AWS_WEB_IDENTITY_TOKEN_FILE };
  if (env.AWS_CONTAINER_CREDENTIALS_FULL_URI)
    return {
      description: "EKS Pod Identity",
      kind: "pod-identity",
      endpoint: env.AWS_CONTAINER_CREDENTIALS_FULL_URI,
      ...(env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE && {
        tokenFile: env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE,
      }),
    };
  return { description: "the default credential chain", kind: "default-chain" };
}

export interface ProblemContext {
  identity: Identity;
  timeoutSeconds: number;
  /** The region calls go to when a reference names none (AWS_REGION). */
  defaultRegion: string | undefined;
}

const NETWORK_CODE = /^E[A-Z]+$/;
const THROTTLING = /Throttl|TooManyRequests|RequestLimitExceeded/;
const CLIENT_CREDENTIAL_CODES = new Set([
  "UnrecognizedClientException",
  "InvalidClientTokenId",
  "InvalidSignatureException",
  "SignatureDoesNotMatch",
  "ExpiredToken",
  "ExpiredTokenException",
]);

function regionOf(source: SecretSource | undefined, ctx: ProblemContext): string {
  return source?.region ?? ctx.defaultRegion ?? "the default region";
}

function networkHint(ctx: ProblemContext, what: string): string {
  return `check that the pod can reach ${what} (VPC endpoint, NAT, DNS, NetworkPolicy egress)${ctx.timeoutSeconds ? `, or raise sm-injector.io/timeout-seconds (now ${ctx.timeoutSeconds} s)` : ""}`;
}

function retriesText(err: AwsCallError, ctx: ProblemContext): string {
  return err.atDeadline
    ? `at the ${ctx.timeoutSeconds} s deadline, after ${err.attempts} attempt${err.attempts === 1 ? "" : "s"}`
    : `after ${err.attempts} attempts`;
}

/** A coded hint: which problem, and what to do about it. */
type Hint = { code: FetchProblemCode; hint: string };

function callHint(source: SecretSource, err: AwsCallError, ctx: ProblemContext): Hint {
  const { code, message } = err;
  const id = source.secretId;
  const who = ctx.identity.kind === "static" ? "the access key" : "the role";
  if (code === "AccessDeniedException" || code === "AccessDenied") {
    if (/kms/i.test(message))
      return {
        code: "kms-denied",
        hint: `${who} lacks kms:Decrypt on the secret's KMS key (check the IAM policy and the key policy)`,
      };
    return {
      code: "access-denied",
      hint: `${who} lacks secretsmanager:GetSecretValue on ${id} (check the IAM policy and the secret's resource policy)`,
    };
  }
  if (code === "DecryptionFailure")
    return {
      code: "kms-denied",
      hint: `Secrets Manager could not decrypt ${id}: ${who} needs kms:Decrypt on the secret's KMS key, and the key must be enabled`,
    };
  if (code === "ResourceNotFoundException")
    return { code: "secret-not-found", hint: notFoundHint(source, ctx) };
  if (code === "InvalidRequestException")
    return /delet/i.test(message)
      ? {
          code: "secret-deleted",
          hint: `the secret is scheduled for deletion; restore it (aws secretsmanager restore-secret --secret-id ${id}) or reference another secret`,
        }
      : { code: "request-refused", hint: `Secrets Manager refused the request (${message})` };
  if (code === "InvalidParameterException" || code === "ValidationException")
    return {
      code: "request-refused",
      hint: `Secrets Manager refused the parameters (${message}); check the reference's name, version id and stage`,
    };
  if (CLIENT_CREDENTIAL_CODES.has(code)) return credentialsHint(err, ctx);
  return answerOrNetworkHint(source, err, ctx);
}

function notFoundHint(source: SecretSource, ctx: ProblemContext): string {
  const id = source.secretId;
  const where = `in region ${regionOf(source, ctx)}`;
  if (source.versionId)
    return `no version ${source.versionId} of ${id} ${where} (check the version id, the name and the region)`;
  if (source.versionStage)
    return `no version of ${id} with stage ${source.versionStage} ${where}, or no such secret (check the stage, the name and the region)`;
  return `no secret named ${id} ${where} (check the name — names are case-sensitive — and the region)`;
}

/** An answer that was unusable, or none came: parse failures, throttling, deadlines, the network. */
function answerOrNetworkHint(source: SecretSource, err: AwsCallError, ctx: ProblemContext): Hint {
  const { code, message } = err;
  const id = source.secretId;
  if (code === MALFORMED_CODE)
    return {
      code: "malformed-response",
      hint: `the answer from Secrets Manager in ${regionOf(source, ctx)} could not be parsed (its text is not shown: it may hold the secret); check that AWS_ENDPOINT_URL or a proxy between the pod and Secrets Manager does not alter answers`,
    };
  if (code === EMPTY_CODE)
    return {
      code: "empty-secret",
      hint: `the answer for ${id} had neither SecretString nor SecretBinary, so there is no value to write (refused rather than written empty); check the secret's version with aws secretsmanager get-secret-value --secret-id ${id}, and any proxy between the pod and Secrets Manager`,
    };
  if (THROTTLING.test(code))
    return {
      code: "throttled",
      hint: `still throttled by Secrets Manager ${retriesText(err, ctx)}; spread pod starts (rollout maxSurge) or raise the account's GetSecretValue quota`,
    };
  if (code === "DeadlineExceeded")
    return {
      code: "deadline",
      hint: `no answer from Secrets Manager in ${regionOf(source, ctx)} within ${ctx.timeoutSeconds} s: ${networkHint(ctx, "Secrets Manager")}`,
    };
  if (NETWORK_CODE.test(code) || /Timeout/i.test(code))
    return {
      code: "network",
      hint: `network error talking to Secrets Manager ${retriesText(err, ctx)} (${message}): ${networkHint(ctx, "Secrets Manager")}`,
    };
  if (/region/i.test(message))
    return {
      code: "no-region",
      hint: "no AWS region: set sm-injector.io/region, or AWS_REGION in the app container",
    };
  return { code: "aws-error", hint: `Secrets Manager failed ${retriesText(err, ctx)} (${message})` };
}

function credentialsHint(err: AwsCallError, ctx: ProblemContext): Hint {
  const { code, message } = err;
  const { identity } = ctx;
  if (code === MALFORMED_CODE)
    return {
      code: "malformed-response",
      hint: `the answer from ${identity.kind === "pod-identity" ? "the EKS Pod Identity agent" : "STS"} could not be parsed (its text is not shown: it may hold credentials); check that AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL or a proxy between the pod and AWS does not alter answers`,
    };
  if (identity.kind === "irsa") return irsaHint(err, ctx);
  if (identity.kind === "pod-identity") {
    if (code === "ENOENT" || code === "EACCES")
      return {
        code: "token-unreadable",
        hint: `cannot read the Pod Identity token file ${identity.tokenFile} (${code}): the EKS Pod Identity webhook mounts it; check the pod identity association for this service account`,
      };
    // The SDK's chain reports only "Could not load credentials from any providers" whether the
    // agent is down or refused the token, so the hint covers both.
    return {
      code: "pod-identity-unavailable",
      hint: `the EKS Pod Identity agent at ${identity.endpoint} gave no credentials (${message}): check that the eks-pod-identity-agent add-on runs on the node, and that a pod identity association exists for this namespace and service account`,
    };
  }
  if (identity.kind === "static")
    return {
      code: "static-key-refused",
      hint: `the access key in AWS_ACCESS_KEY_ID was refused (${message}); pods should use IRSA or EKS Pod Identity instead of static keys`,
    };
  return {
    code: "no-identity",
    hint: `the pod has no AWS identity (${message}): annotate its ServiceAccount with eks.amazonaws.com/role-arn (IRSA) or create an EKS Pod Identity association`,
  };
}

function irsaHint(err: AwsCallError, ctx: ProblemContext): Hint {
  const { code, message, atDeadline } = err;
  const { identity } = ctx;
  if (code === "ENOENT" || code === "EACCES")
    return {
      code: "token-unreadable",
      hint: `cannot read the web identity token file ${identity.tokenFile} (${code}): the projected service-account token must be mounted there; check the pod's ServiceAccount annotation eks.amazonaws.com/role-arn and that the pod was created after it was set (check the IRSA setup)`,
    };
  if (/ExpiredToken/.test(code))
    return {
      code: "token-rejected",
      hint: "STS says the web identity token has expired: the kubelet refreshes projected tokens, so check the node's clock and the token's expirationSeconds (check the IRSA setup)",
    };
  if (/InvalidIdentityToken/.test(code))
    return {
      code: "token-rejected",
      hint: `STS rejected the web identity token (${message}): the cluster's OIDC issuer must be registered as an IAM OIDC provider with audience sts.amazonaws.com (check the IRSA setup)`,
    };
  if (code === "AccessDenied" || code === "AccessDeniedException")
    return {
      code: "assume-role-denied",
      hint: `STS refused AssumeRoleWithWebIdentity for ${identity.description}: the role's trust policy must allow the cluster's OIDC provider, the subject system:serviceaccount:<namespace>:<serviceaccount> and the audience sts.amazonaws.com (check the IRSA setup)`,
    };
  if (atDeadline || NETWORK_CODE.test(code) || /Timeout/i.test(code))
    return {
      code: atDeadline ? "deadline" : "network",
      hint: `no answer from STS (${message}): ${networkHint(ctx, "STS (AWS_ENDPOINT_URL_STS or sts.<region>.amazonaws.com)")}`,
    };
  return {
    code: "irsa-failed",
    hint: `could not assume ${identity.description} with the pod's web identity token (${message}); check the IRSA setup: the role's trust policy, the OIDC provider and the ServiceAccount annotation`,
  };
}

/** The coded problem of a failed GetSecretValue: where is the secret, the message its AWS code and the identity. */
export function callFetchProblem(source: SecretSource, err: AwsCallError, ctx: ProblemContext): FetchProblem {
  const { code, hint } = callHint(source, err, ctx);
  return { code, where: describeSource(source), message: `${err.code} as ${ctx.identity.description}`, hint };
}

/** `<secret>: <code> as <identity> — <hint> [<problem code>]` for a failed GetSecretValue. */
export function callErrorLine(source: SecretSource, err: AwsCallError, ctx: ProblemContext): string {
  return problemLine(callFetchProblem(source, err, ctx));
}

/** `<code> as <identity> — <hint> [<problem code>]`: the part of a call's error line after the secret. */
export function callProblem(source: SecretSource, err: AwsCallError, ctx: ProblemContext): string {
  return problemLine({ ...callFetchProblem(source, err, ctx), where: "" });
}

/** One line for all the secrets of a region when no credentials could be obtained for it. */
export function credentialsErrorLine(
  region: string | undefined,
  secrets: readonly string[],
  err: AwsCallError,
  ctx: ProblemContext,
): string {
  const shown = secrets.slice(0, 3).join(", ") + (secrets.length > 3 ? ", …" : "");
  const which = secrets.length === 1 ? (secrets[0] as string) : `${secrets.length} secrets (${shown})`;
  const { code, hint } = credentialsHint(err, ctx);
  return problemLine({
    code,
    where: which,
    message: `no AWS credentials for ${region ?? ctx.defaultRegion ?? "the default region"}: ${err.code} as ${ctx.identity.description}`,
    hint,
  });
}

/** The init container was started without a usable spec (exit 2). */
export function specProblem(code: "spec-missing" | "spec-invalid", message: string): string {
  return problem(code, "", message);
}

/** A variable that cannot be written exactly in the output format (`origin`: where its value comes from). */
export function encodeProblem(origin: string | undefined, format: string, message: string): string {
  return problem("cannot-encode", origin ?? "", `cannot be written in the ${format} format: ${message}`);
}

/** The output directory cannot be written: the errno, and what it means for the sm-injector volume. */
export function writeProblem(e: unknown, outputDir: string): string {
  const code = cleanCode((e as NodeJS.ErrnoException)?.code ?? "Error");
  const why =
    code === "ENOENT"
      ? "the output directory does not exist (it is the mount of the sm-injector memory volume)"
      : code === "EACCES" || code === "EPERM" || code === "EROFS"
        ? "no permission to write there (check the volume and the init container's runAsUser/fsGroup)"
        : code === "ENOSPC"
          ? "the memory volume is full (raise the webhook's volume size limit)"
          : cleanText(String((e as Error)?.message ?? e));
  return problem("write-failed", `cannot write to ${outputDir}`, code, why);
}

/**
 * An unexpected exception: its type, its message cleaned and capped (a parser's message, which
 * quotes its input, is not shown).
 */
export function internalErrorProblem(e: unknown): string {
  const name = cleanCode((e as Error)?.name ?? "Error");
  const message =
    name === "SyntaxError" ? "(message not shown)" : cleanText(String((e as Error)?.message ?? e));
  return problem("internal-error", "", `internal error, nothing written: ${name}: ${message}`);
}

/**
 * The termination message of a failed fetch: the problem lines, whole, within `limit` bytes (the
 * kubelet keeps no more), the rest counted in a last line. What `kubectl describe pod` shows, codes
 * included, instead of the tail of the log.
 */
export function terminationText(lines: readonly string[], limit: number): string {
  const reserve = 48; // for "… and N more problems (see the log)"
  let text = "";
  for (let i = 0; i < lines.length; i++) {
    const next = `${text}${lines[i]}\n`;
    const room = i === lines.length - 1 ? limit : limit - reserve;
    if (Buffer.byteLength(next) > room) {
      const more = lines.length - i;
      return `${text}… and ${more} more problem${more === 1 ? "" : "s"} (see the log)\n`;
    }
    text = next;
  }
  return text;
}
