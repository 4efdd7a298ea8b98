// What went wrong, as one line per problem for the init container's stderr (and so the pod's
// events and termination message): the secret, the AWS error code, the identity in use and what to
// do about it. Never a value: a parser's message, which quotes the text it failed on, is never used
// (see classify in retry.ts), and the text that comes from AWS or Node is cleaned and capped here.
import type { SecretSource } from "../spec/fetch-spec.ts";
import { describeSource } from "./resolve.ts";

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

function callHint(source: SecretSource, err: AwsCallError, ctx: ProblemContext): string {
  const { code, message } = err;
  const id = source.secretId;
  const who = ctx.identity.kind === "static" ? "the access key" : "the role";
  if (code === "AccessDeniedException" || code === "AccessDenied") {
    if (/kms/i.test(message))
      return `${who} lacks kms:Decrypt on the secret's KMS key (check the IAM policy and the key policy)`;
    return `${who} lacks secretsmanager:GetSecretValue on ${id} (check the IAM policy and the secret's resource policy)`;
  }
  if (code === "DecryptionFailure")
    return `Secrets Manager could not decrypt ${id}: ${who} needs kms:Decrypt on the secret's KMS key, and the key must be enabled`;
  if (code === "ResourceNotFoundException") {
    const where = `in region ${regionOf(source, ctx)}`;
    if (source.versionId)
      return `no version ${source.versionId} of ${id} ${where} (check the version id, the name and the region)`;
    if (source.versionStage)
      return `no version of ${id} with stage ${source.versionStage} ${where}, or no such secret (check the stage, the name and the region)`;
    return `no secret named ${id} ${where} (check the name — names are case-sensitive — and the region)`;
  }
  if (code === "InvalidRequestException")
    return /delet/i.test(message)
      ? `the secret is scheduled for deletion; restore it (aws secretsmanager restore-secret --secret-id ${id}) or reference another secret`
      : `Secrets Manager refused the request (${message})`;
  if (code === "InvalidParameterException" || code === "ValidationException")
    return `Secrets Manager refused the parameters (${message}); check the reference's name, version id and stage`;
  if (CLIENT_CREDENTIAL_CODES.has(code)) return credentialsHint(err, ctx);
  if (code === MALFORMED_CODE)
    return `the answer from Secrets Manager in ${regionOf(source, ctx)} could not be parsed (its text is not shown: it may hold the secret); check that AWS_ENDPOINT_URL or a proxy between the pod and Secrets Manager does not alter answers`;
  if (code === EMPTY_CODE)
    return `the answer for ${id} had neither SecretString nor SecretBinary, so there is no value to write (refused rather than written empty); check the secret's version with aws secretsmanager get-secret-value --secret-id ${id}, and any proxy between the pod and Secrets Manager`;
  if (THROTTLING.test(code))
    return `still throttled by Secrets Manager ${retriesText(err, ctx)}; spread pod starts (rollout maxSurge) or raise the account's GetSecretValue quota`;
  if (code === "DeadlineExceeded")
    return `no answer from Secrets Manager in ${regionOf(source, ctx)} within ${ctx.timeoutSeconds} s: ${networkHint(ctx, "Secrets Manager")}`;
  if (NETWORK_CODE.test(code) || /Timeout/i.test(code))
    return `network error talking to Secrets Manager ${retriesText(err, ctx)} (${message}): ${networkHint(ctx, "Secrets Manager")}`;
  if (/region/i.test(message))
    return "no AWS region: set sm-injector.io/region, or AWS_REGION in the app container";
  return `Secrets Manager failed ${retriesText(err, ctx)} (${message})`;
}

function credentialsHint(err: AwsCallError, ctx: ProblemContext): string {
  const { code, message, atDeadline } = err;
  const { identity } = ctx;
  if (code === MALFORMED_CODE)
    return `the answer from ${identity.kind === "pod-identity" ? "the EKS Pod Identity agent" : "STS"} could not be parsed (its text is not shown: it may hold credentials); check that AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL or a proxy between the pod and AWS does not alter answers`;
  if (identity.kind === "irsa") {
    if (code === "ENOENT" || code === "EACCES")
      return `cannot read the web identity token file ${identity.tokenFile} (${code}): the projected service-account token must be mounted there; check the pod's ServiceAccount annotation eks.amazonaws.com/role-arn and that the pod was created after it was set (check the IRSA setup)`;
    if (/ExpiredToken/.test(code))
      return "STS says the web identity token has expired: the kubelet refreshes projected tokens, so check the node's clock and the token's expirationSeconds (check the IRSA setup)";
    if (/InvalidIdentityToken/.test(code))
      return `STS rejected the web identity token (${message}): the cluster's OIDC issuer must be registered as an IAM OIDC provider with audience sts.amazonaws.com (check the IRSA setup)`;
    if (code === "AccessDenied" || code === "AccessDeniedException")
      return `STS refused AssumeRoleWithWebIdentity for ${identity.description}: the role's trust policy must allow the cluster's OIDC provider, the subject system:serviceaccount:<namespace>:<serviceaccount> and the audience sts.amazonaws.com (check the IRSA setup)`;
    if (atDeadline || NETWORK_CODE.test(code) || /Timeout/i.test(code))
      return `no answer from STS (${message}): ${networkHint(ctx, "STS (AWS_ENDPOINT_URL_STS or sts.<region>.amazonaws.com)")}`;
    return `could not assume ${identity.description} with the pod's web identity token (${message}); check the IRSA setup: the role's trust policy, the OIDC provider and the ServiceAccount annotation`;
  }
  if (identity.kind === "pod-identity") {
    if (code === "ENOENT" || code === "EACCES")
      return `cannot read the Pod Identity token file ${identity.tokenFile} (${code}): the EKS Pod Identity webhook mounts it; check the pod identity association for this service account`;
    // The SDK's chain reports only "Could not load credentials from any providers" whether the
    // agent is down or refused the token, so the hint covers both.
    return `the EKS Pod Identity agent at ${identity.endpoint} gave no credentials (${message}): check that the eks-pod-identity-agent add-on runs on the node, and that a pod identity association exists for this namespace and service account`;
  }
  if (identity.kind === "static")
    return `the access key in AWS_ACCESS_KEY_ID was refused (${message}); pods should use IRSA or EKS Pod Identity instead of static keys`;
  return `the pod has no AWS identity (${message}): annotate its ServiceAccount with eks.amazonaws.com/role-arn (IRSA) or create an EKS Pod Identity association`;
}

/** `<secret>: <code> as <identity> — <hint>` for a failed GetSecretValue. */
export function callErrorLine(source: SecretSource, err: AwsCallError, ctx: ProblemContext): string {
  return `${describeSource(source)}: ${callProblem(source, err, ctx)}`;
}

/** `<code> as <identity> — <hint>`: the part of a call's error line after the secret. */
export function callProblem(source: SecretSource, err: AwsCallError, ctx: ProblemContext): string {
  return `${err.code} as ${ctx.identity.description} — ${callHint(source, err, ctx)}`;
}

/** One line for all the secrets of a region when no credentials could be obtained for it. */
export function credentialsErrorLine(
  region: string | undefined,
  secrets: readonly string[],
  err: AwsCallError,
  ctx: ProblemContext,
): string {
  const shown = secrets.slice(0, 3).join(", ") + (secrets.length > 3 ? ", …" : "");
  const which = secrets.length === 1 ? secrets[0] : `${secrets.length} secrets (${shown})`;
  return `${which}: no AWS credentials for ${region ?? ctx.defaultRegion ?? "the default region"}: ${err.code} as ${ctx.identity.description} — ${credentialsHint(err, ctx)}`;
}
