// The STS role session name of the init container's IRSA call, so that CloudTrail names the pod.
// AssumeRoleWithWebIdentity records it, and every call made with the temporary keys carries it in
// the caller's ARN (`arn:aws:sts::<account>:assumed-role/<role>/<session name>`), GetSecretValue
// included. Left to the SDK it would be `aws-sdk-js-session-<milliseconds>`, which names no one.
// Pure.
//
// The name is `sm-injector.<namespace>.<pod>`: the namespace and pod name come from the downward API
// (POD_NAMESPACE, POD_NAME: fieldRefs on the injected init container), so a pod's author cannot
// choose them: a pod created by a ReplicaSet gets its name after admission, and only the kubelet
// knows it. STS allows 2-64 characters of `[\w+=,.@-]`; a longer name is cut and ends in `_` and a
// hash of the whole name, so two pods never share a session name however long their names.
import { createHash } from "node:crypto";

/** The variable every AWS SDK (JS, Go, Python, Java) reads the web identity session name from. */
export const ROLE_SESSION_NAME_ENV = "AWS_ROLE_SESSION_NAME";
export const SESSION_NAME_PREFIX = "sm-injector";
/** STS's RoleSessionName: 2 to 64 characters. */
export const MAX_SESSION_NAME = 64;
/** What STS accepts in a RoleSessionName. */
export const SESSION_NAME_PATTERN = /^[\w+=,.@-]{2,64}$/;
/** Hex digits of the hash a cut name ends with (40 bits: a collision needs ~10^6 pods sharing a 52-character prefix). */
export const SESSION_HASH_LENGTH = 10;

/**
 * What a Kubernetes namespace (a DNS label: no dot, so the first dot ends it) and a pod name (a DNS
 * subdomain) are made of. Names written only with these are used as they are; anything else (the
 * variables set by hand outside Kubernetes) gets the hash, so a name used as it is never ends in
 * `_<hash>` and never equals a hashed one.
 */
const NAMESPACE = /^[a-z0-9-]+$/;
const POD = /^[a-z0-9.-]+$/;
const NOT_ALLOWED = /[^\w+=,.@-]/g;

/**
 * `sm-injector.<namespace>.<pod>`, or its first 53 characters (unsupported ones replaced by `_`)
 * and `_` + 10 hex digits of SHA-256 of the two names when it is longer than 64 characters or has
 * characters STS refuses.
 */
export function podSessionName(namespace: string, pod: string): string {
  const whole = `${SESSION_NAME_PREFIX}.${namespace}.${pod}`;
  if (whole.length <= MAX_SESSION_NAME && NAMESPACE.test(namespace) && POD.test(pod)) return whole;
  // Of both names apart (JSON), not of `whole`: "a.b" + "c" and "a" + "b.c" hash differently.
  const hash = createHash("sha256")
    .update(JSON.stringify([namespace, pod]), "utf8")
    .digest("hex")
    .slice(0, SESSION_HASH_LENGTH);
  // Cut by UTF-16 units before replacing, so a pair of surrogates is one `_` or none.
  const head = whole.slice(0, MAX_SESSION_NAME - SESSION_HASH_LENGTH - 1).replace(NOT_ALLOWED, "_");
  return `${head}_${hash}`;
}

/**
 * The session name the init container uses, or undefined to leave the SDK's default: only for IRSA
 * (a role and a web identity token file), and only when the downward API gave both names. EKS Pod
 * Identity needs none: EKS names its sessions and tags them with the pod's namespace and name.
 *
 * It wins over an AWS_ROLE_SESSION_NAME already in the environment: the webhook never copies the
 * app container's one (whoever writes the pod would choose what CloudTrail says about it), so one
 * here was not set by Kubernetes for this pod.
 */
export function roleSessionName(env: Readonly<Record<string, string | undefined>>): string | undefined {
  const { POD_NAMESPACE: namespace, POD_NAME: pod } = env;
  if (!env.AWS_ROLE_ARN || !env.AWS_WEB_IDENTITY_TOKEN_FILE || !namespace || !pod) return undefined;
  return podSessionName(namespace, pod);
}
