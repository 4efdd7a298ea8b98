// The least-privilege IAM policies for the roles pods fetch with: what each role must be allowed
// (GetSecretValue on exactly its pods' secrets, BatchGetSecretValue when batching is on, kms:Decrypt
// through Secrets Manager for customer-managed keys), who may assume it (IRSA or EKS Pod Identity),
// and the rotation controller's DescribeSecret. Pure and deterministic: every list is sorted.
import {
  type OidcProvider,
  oidcProviderArn,
  type Partition,
  type Result,
  type RoleArn,
  type SecretGrant,
  secretGrant,
} from "./arn.ts";

/** A condition block: operator → key → values. */
export type Condition = Record<string, Record<string, string[]>>;

export interface Statement {
  /** Letters and digits only, as IAM requires. */
  Sid: string;
  Effect: "Allow";
  Principal?: { Federated: string } | { Service: string };
  Action: string[];
  Resource?: string[];
  Condition?: Condition;
}

export interface PolicyDocument {
  Version: "2012-10-17";
  Statement: Statement[];
}

/** One secret a pod reads, as its compiled fetch spec names it. */
export interface SecretRead {
  secretId: string;
  region?: string;
}

export interface ServiceAccountRef {
  namespace: string;
  name: string;
  /** The audience of the token the pod presents (IRSA only). */
  audience?: string;
}

/** Everything the pods of one role need. */
export interface RoleNeeds {
  role: RoleArn;
  /** ServiceAccounts whose pods assume the role with IRSA (web identity). */
  irsa: ServiceAccountRef[];
  /** ServiceAccounts whose pods assume it with EKS Pod Identity (role given by --role-arn). */
  podIdentity: ServiceAccountRef[];
  /** Where each pod template is in the input. */
  pods: string[];
  secrets: SecretRead[];
  /** Some pod's init container may call BatchGetSecretValue. */
  batch: boolean;
}

export interface PolicyOptions {
  /** Account of secrets given by name (default: the role's). */
  account?: string;
  /** Customer-managed KMS keys that encrypt the secrets. */
  kmsKeyArns: string[];
  oidcProvider?: OidcProvider;
}

export interface RolePolicies {
  roleArn: string;
  serviceAccounts: string[];
  pods: string[];
  policy: PolicyDocument;
  trustPolicy?: PolicyDocument;
  notes: string[];
}

/** IAM's limits on a policy's size, counted without whitespace. */
export const MANAGED_POLICY_CHARS = 6144;
export const INLINE_POLICY_CHARS = 10240;

const uniqueSorted = (xs: Iterable<string>) => [...new Set(xs)].sort();

/** The secret Resources of a role, or every secret that cannot be granted safely. */
function grantsFor(
  role: RoleArn,
  secrets: readonly SecretRead[],
  account: string | undefined,
): { grants: SecretGrant[]; errors: string[] } {
  const grants: SecretGrant[] = [];
  const errors: string[] = [];
  const at = { partition: role.partition, account: account ?? role.account };
  for (const s of secrets) {
    const g = secretGrant(s.secretId, s.region, at);
    if (g.ok) grants.push(g.value);
    else errors.push(`role ${role.arn}: ${g.error}`);
  }
  return { grants, errors };
}

const KMS_KEY_ARN =
  /^arn:(aws|aws-cn|aws-us-gov):kms:[a-z]{2}(?:-[a-z]+)+-\d{1,2}:\d{12}:key\/(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$/;

/** `--kms-key-arn` values: key ARNs (IAM authorizes kms:Decrypt on the key, never on an alias). */
export function checkKmsKeyArns(arns: readonly string[], partition: Partition): string[] {
  return arns.flatMap((arn) => {
    if (!KMS_KEY_ARN.test(arn))
      return [
        `--kms-key-arn ${JSON.stringify(arn.slice(0, 300))} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/KEY-ID; an alias ARN does not authorize kms:Decrypt)`,
      ];
    if (arn.split(":")[1] !== partition) return [`--kms-key-arn ${arn} is not in partition ${partition}`];
    return [];
  });
}

/** What the app's role may do. */
function permissionPolicy(
  grants: readonly SecretGrant[],
  needs: RoleNeeds,
  kmsKeyArns: string[],
): PolicyDocument {
  const resources = uniqueSorted(grants.map((g) => g.resource));
  const statements: Statement[] = [
    {
      Sid: "ReadPodSecrets",
      Effect: "Allow",
      Action: ["secretsmanager:GetSecretValue"],
      Resource: resources,
    },
  ];
  // BatchGetSecretValue has no resource type: IAM only accepts "*", and checks GetSecretValue on
  // each secret the call returns, so the statement above still bounds what the role reads.
  if (needs.batch)
    statements.push({
      Sid: "BatchReadPodSecrets",
      Effect: "Allow",
      Action: ["secretsmanager:BatchGetSecretValue"],
      Resource: ["*"],
    });
  if (kmsKeyArns.length > 0)
    statements.push({
      Sid: "DecryptPodSecrets",
      Effect: "Allow",
      Action: ["kms:Decrypt"],
      Resource: uniqueSorted(kmsKeyArns),
      // Secrets Manager decrypts with the secret's ARN as encryption context: the key serves these
      // secrets and nothing else through this role.
      Condition: { StringLike: { "kms:EncryptionContext:SecretARN": resources } },
    });
  return { Version: "2012-10-17", Statement: statements };
}

/** Who may assume the role: the cluster's OIDC provider for IRSA, the EKS Pod Identity agent. */
function trustPolicy(
  needs: RoleNeeds,
  provider: OidcProvider | undefined,
): Result<PolicyDocument | undefined> {
  const statements: Statement[] = [];
  if (needs.irsa.length > 0 && provider) {
    const arn = oidcProviderArn(provider, needs.role);
    if (!arn.ok) return arn;
    statements.push({
      Sid: "ServiceAccountsWithIrsa",
      Effect: "Allow",
      Principal: { Federated: arn.value },
      Action: ["sts:AssumeRoleWithWebIdentity"],
      Condition: {
        StringEquals: {
          [`${provider.issuer}:aud`]: uniqueSorted(needs.irsa.map((s) => s.audience ?? "sts.amazonaws.com")),
          [`${provider.issuer}:sub`]: uniqueSorted(
            needs.irsa.map((s) => `system:serviceaccount:${s.namespace}:${s.name}`),
          ),
        },
      },
    });
  }
  if (needs.podIdentity.length > 0)
    statements.push({
      Sid: "EksPodIdentity",
      Effect: "Allow",
      Principal: { Service: "pods.eks.amazonaws.com" },
      Action: ["sts:AssumeRole", "sts:TagSession"],
    });
  return {
    ok: true,
    value: statements.length > 0 ? { Version: "2012-10-17", Statement: statements } : undefined,
  };
}

/** Characters of a policy as IAM counts them against its size limits (whitespace excluded). */
export function policyChars(p: PolicyDocument): number {
  return JSON.stringify(p).replace(/\s/g, "").length;
}

function roleNotes(
  needs: RoleNeeds,
  grants: readonly SecretGrant[],
  opts: PolicyOptions,
  policy: PolicyDocument,
): string[] {
  const notes: string[] = [];
  if (opts.kmsKeyArns.length === 0)
    notes.push(
      "secrets encrypted with the AWS managed key aws/secretsmanager need nothing more; for a customer-managed KMS key, pass --kms-key-arn to add kms:Decrypt on it, limited to these secrets by kms:EncryptionContext:SecretARN",
    );
  const foreign = uniqueSorted(grants.filter((g) => g.account !== needs.role.account).map((g) => g.resource));
  if (foreign.length > 0)
    notes.push(
      `${foreign.join(", ")}: in another account than the role; that secret's resource policy must also allow this role, and it must be encrypted with a customer-managed key whose key policy allows it (the AWS managed key cannot be used across accounts)`,
    );
  if (needs.irsa.length > 0 && !opts.oidcProvider)
    notes.push(
      "pass --oidc-provider (the cluster's OIDC issuer URL or provider ARN) for the IRSA trust policy",
    );
  if (needs.podIdentity.length > 0)
    notes.push(
      `EKS Pod Identity: associate the role with ${uniqueSorted(needs.podIdentity.map((s) => `${s.namespace}/${s.name}`)).join(", ")} (aws eks create-pod-identity-association --namespace NS --service-account SA --role-arn ${needs.role.arn})`,
    );
  const chars = policyChars(policy);
  if (chars > MANAGED_POLICY_CHARS)
    notes.push(
      `the policy is ${chars} characters; IAM allows ${MANAGED_POLICY_CHARS} in a managed policy and ${INLINE_POLICY_CHARS} in all of a role's inline policies together: split the pods across roles or use fewer secrets`,
    );
  return notes;
}

/** The policies of one role, or every reason they cannot be written. */
export function buildRolePolicies(needs: RoleNeeds, opts: PolicyOptions): Result<RolePolicies> {
  const { grants, errors } = grantsFor(needs.role, needs.secrets, opts.account);
  errors.push(...checkKmsKeyArns(opts.kmsKeyArns, needs.role.partition));
  const trust = trustPolicy(needs, opts.oidcProvider);
  if (!trust.ok) errors.push(trust.error);
  if (errors.length > 0 || !trust.ok) return { ok: false, error: errors.join("\n") };
  const policy = permissionPolicy(grants, needs, opts.kmsKeyArns);
  return {
    ok: true,
    value: {
      roleArn: needs.role.arn,
      serviceAccounts: uniqueSorted(
        [...needs.irsa, ...needs.podIdentity].map((s) => `${s.namespace}/${s.name}`),
      ),
      pods: uniqueSorted(needs.pods),
      policy,
      ...(trust.value && { trustPolicy: trust.value }),
      notes: roleNotes(needs, grants, opts, policy),
    },
  };
}

/**
 * The rotation controller's policy: DescribeSecret (metadata, never a value) on the secrets it
 * watches, i.e. those of pods that opt in to restart-on-rotation and do not pin a versionId.
 */
export function buildRotationPolicy(
  role: RoleArn,
  secrets: readonly SecretRead[],
  account: string | undefined,
): Result<{ roleArn: string; policy: PolicyDocument }> {
  const { grants, errors } = grantsFor(role, secrets, account);
  if (errors.length > 0) return { ok: false, error: errors.join("\n") };
  return {
    ok: true,
    value: {
      roleArn: role.arn,
      policy: {
        Version: "2012-10-17",
        Statement: [
          {
            Sid: "WatchRotatedSecrets",
            Effect: "Allow",
            Action: ["secretsmanager:DescribeSecret"],
            Resource: uniqueSorted(grants.map((g) => g.resource)),
          },
        ],
      },
    },
  };
}
