// One line per problem, for the init container's stderr (and the pod's termination message):
// the secret, the AWS error code, the identity in use and what to do about it. Never a value.

import type { SecretSource } from "../spec/fetch-spec.ts";
import { describeSource } from "./resolve.ts";

export interface Identity {
  /** What a user recognises: a role ARN, "EKS Pod Identity", … */
  readonly description: string;
  readonly kind: "irsa" | "pod-identity" | "default-chain";
}

export function identityFromEnv(env: NodeJS.ProcessEnv): Identity {
  if (env.AWS_ROLE_ARN) return { description: env.AWS_ROLE_ARN, kind: "irsa" };
  if (env.AWS_CONTAINER_CREDENTIALS_FULL_URI)
    return { description: "EKS Pod Identity", kind: "pod-identity" };
  return {
    description: "the default credential chain (no IRSA or EKS Pod Identity variables)",
    kind: "default-chain",
  };
}

const CREDENTIAL_CODES = new Set([
  "CredentialsProviderError",
  "InvalidIdentityToken",
  "InvalidIdentityTokenException",
  "ExpiredToken",
  "ExpiredTokenException",
  "IDPCommunicationError",
  "IDPRejectedClaim",
  "UnrecognizedClientException",
  "InvalidClientTokenId",
  "InvalidSignatureException",
  "SignatureDoesNotMatch",
]);

function hint(
  code: string,
  message: string,
  source: SecretSource,
  identity: Identity,
  timeoutSeconds: number,
): string {
  const id = source.secretId;
  if (code === "AccessDeniedException" || code === "AccessDenied") {
    if (/kms/i.test(message))
      return `the role lacks kms:Decrypt on the secret's KMS key (add it to the IAM policy and the key policy)`;
    if (/AssumeRoleWithWebIdentity/i.test(message)) return irsaHint(identity);
    return `the role lacks secretsmanager:GetSecretValue on ${id} (check the IAM policy and the secret's resource policy)`;
  }
  if (code === "DecryptionFailure")
    return "Secrets Manager could not decrypt the secret with its KMS key: the role needs kms:Decrypt on the key, and the key must be enabled";
  if (code === "InvalidRequestException") {
    return /deletion/i.test(message)
      ? `the secret is scheduled for deletion; restore it (aws secretsmanager restore-secret --secret-id ${id}) or reference another`
      : `Secrets Manager refused the request: ${message}`;
  }
  if (code === "InvalidParameterException") return `Secrets Manager refused the parameters: ${message}`;
  if (CREDENTIAL_CODES.has(code) || /credential|web identity|token/i.test(message))
    return identity.kind === "default-chain" ? noIdentityHint() : irsaHint(identity);
  if (code === "DeadlineExceeded" || /abort/i.test(code) || /abort/i.test(message)) {
    return `no answer within the ${timeoutSeconds} s deadline: check that the pod can reach Secrets Manager and STS (VPC endpoints, NAT, DNS, NetworkPolicy egress), or raise sm-injector.io/timeout-seconds`;
  }
  if (/Throttl|TooManyRequests|RequestLimitExceeded/.test(code))
    return `still throttled by Secrets Manager after retries (${message}); spread pod starts or raise the account's quota`;
  if (/^E[A-Z]+$/.test(code) || /Timeout/i.test(code))
    return `network error talking to AWS (${message}): check the VPC endpoint for secretsmanager, NAT, DNS and NetworkPolicy egress`;
  if (/region/i.test(message))
    return "no AWS region: set sm-injector.io/region or AWS_REGION in the app container";
  return message;
}

function irsaHint(identity: Identity): string {
  if (identity.kind === "pod-identity")
    return "EKS Pod Identity could not provide credentials: check the pod identity association for this service account and that the eks-pod-identity-agent runs on the node";
  return `could not assume ${identity.description} with the pod's web identity token: the role's trust policy must allow the cluster's OIDC provider, the subject system:serviceaccount:<namespace>:<serviceaccount> and the audience sts.amazonaws.com`;
}

function noIdentityHint(): string {
  return "the pod has no AWS identity: annotate its ServiceAccount with eks.amazonaws.com/role-arn (IRSA) or create an EKS Pod Identity association";
}

/** `sm-injector fetch: <secret>: <code> as <identity> — <hint>` */
export function fetchErrorLine(
  source: SecretSource,
  code: string,
  message: string,
  identity: Identity,
  timeoutSeconds: number,
): string {
  return `${describeSource(source)}: ${code} as ${identity.description} — ${hint(code, message, source, identity, timeoutSeconds)}`;
}
