// The ARNs an IAM policy for sm-injector names: the app's role, its secrets, the cluster's OIDC
// provider. Each is parsed or built here, and refused when it could widen a grant: IAM reads `*` and
// `?` in a Resource as wildcards, so nothing that carries them (or any character a Secrets Manager
// name cannot have) reaches a policy. Pure.

import { SECRET_NAME_PATTERN } from "../contract/reference.ts";

export type Result<T> = { ok: true; value: T } | { ok: false; error: string };
const fail = (error: string): { ok: false; error: string } => ({ ok: false, error });

/** The partitions `iam-policy` writes policies for. */
export const PARTITIONS = ["aws", "aws-cn", "aws-us-gov"] as const;
export type Partition = (typeof PARTITIONS)[number];

export interface RoleArn {
  arn: string;
  partition: Partition;
  account: string;
  /** The role's name, without its path. */
  name: string;
}

// IAM: a path is / or /…/ of printable ASCII (at most 512), a role name 1-64 of [\w+=,.@-].
const ROLE_ARN =
  /^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):role\/(?:[\x21-\x7e]{1,510}\/)?([\w+=,.@-]{1,64})$/;

export function parseRoleArn(text: string): Result<RoleArn> {
  const m = text.length <= 2048 ? ROLE_ARN.exec(text) : null;
  if (!m)
    return fail(
      `${JSON.stringify(text.slice(0, 200))} is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME; partitions ${PARTITIONS.join(", ")})`,
    );
  return {
    ok: true,
    value: { arn: text, partition: m[1] as Partition, account: m[2] as string, name: m[3] as string },
  };
}

/** The partition a region belongs to (regions outside the three supported ones name their own). */
export function partitionOfRegion(region: string): string {
  if (region.startsWith("cn-")) return "aws-cn";
  if (region.startsWith("us-gov-")) return "aws-us-gov";
  if (region.startsWith("us-isob-")) return "aws-iso-b";
  if (region.startsWith("us-iso-")) return "aws-iso";
  if (region.startsWith("eusc-")) return "aws-eusc";
  return "aws";
}

const SECRET_ARN =
  /^arn:([a-z-]+):secretsmanager:([a-z]{2}(?:-[a-z]+)+-\d{1,2}):(\d{12}):secret:(.{1,512})$/s;
/** The hyphen and six random characters Secrets Manager appends to a secret's name in its ARN. */
const ARN_SUFFIX = /-[A-Za-z0-9]{6}$/;
/** IAM's pattern for that suffix: exactly six characters, so a longer sibling's name never matches. */
export const SUFFIX_PATTERN = "-??????";

export interface SecretGrant {
  /** The policy Resource. */
  resource: string;
  region: string;
  account: string;
  /** A full ARN given as written (suffix included): granted as is. */
  exact: boolean;
}

/**
 * The Resource that grants exactly one referenced secret: a name becomes its ARN with the suffix
 * pattern (the role's or `account`'s account, the reference's region); a full ARN is kept as is; a
 * partial ARN (no suffix) gets the suffix pattern.
 */
export function secretGrant(
  secretId: string,
  region: string | undefined,
  at: { partition: Partition; account: string },
): Result<SecretGrant> {
  if (secretId.startsWith("arn:")) return arnGrant(secretId, at.partition);
  // What Secrets Manager allows in a name: notably no `*` and no `?`, IAM's wildcards.
  if (!SECRET_NAME_PATTERN.test(secretId))
    return fail(
      `secret name ${JSON.stringify(secretId.slice(0, 200))} has characters Secrets Manager names cannot have (allowed: letters, digits and / _ + = . @ -, after an AWS service's prefix such as rds!); IAM would read * and ? as wildcards`,
    );
  if (region === undefined) return fail(`no region for secret ${secretId}; pass --region`);
  const inPartition = partitionOfRegion(region);
  if (inPartition !== at.partition)
    return fail(
      `secret ${secretId} is read in ${region} (partition ${inPartition}), but the role is in partition ${at.partition}: a role cannot read secrets of another partition`,
    );
  return {
    ok: true,
    value: {
      resource: `arn:${at.partition}:secretsmanager:${region}:${at.account}:secret:${secretId}${SUFFIX_PATTERN}`,
      region,
      account: at.account,
      exact: false,
    },
  };
}

function arnGrant(arn: string, partition: Partition): Result<SecretGrant> {
  const m = SECRET_ARN.exec(arn);
  if (!m)
    return fail(
      `${JSON.stringify(arn.slice(0, 300))} is not a Secrets Manager ARN (arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME)`,
    );
  const [, arnPartition, region, account, name] = m as unknown as [string, string, string, string, string];
  if (!SECRET_NAME_PATTERN.test(name))
    return fail(
      `${JSON.stringify(arn.slice(0, 300))} names a secret with characters Secrets Manager names cannot have (allowed: letters, digits and / _ + = . @ -, after an AWS service's prefix such as rds!); IAM would read * and ? as wildcards`,
    );
  if (arnPartition !== partition)
    return fail(`${arn} is in partition ${arnPartition}, but the role is in partition ${partition}`);
  const exact = ARN_SUFFIX.test(name);
  return {
    ok: true,
    value: { resource: exact ? arn : `${arn}${SUFFIX_PATTERN}`, region, account, exact },
  };
}

export interface OidcProvider {
  /** Issuer without the scheme, as IAM names the condition keys: `oidc.eks.REGION.amazonaws.com/id/ID`. */
  issuer: string;
  /** Set when given as an ARN. */
  arn?: { partition: string; account: string };
}

const ISSUER = /^[A-Za-z0-9.-]{1,253}(?::\d{1,5})?(?:\/[A-Za-z0-9._~-]{1,255}){0,16}$/;
const PROVIDER_ARN = /^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):oidc-provider\/(.+)$/;

/** `--oidc-provider`: the provider's ARN, the issuer URL (`aws eks describe-cluster … identity.oidc.issuer`) or the issuer without https://. */
export function parseOidcProvider(text: string): Result<OidcProvider> {
  const m = PROVIDER_ARN.exec(text);
  const issuer = (m ? (m[3] as string) : text).replace(/^https:\/\//, "").replace(/\/$/, "");
  if (!ISSUER.test(issuer))
    return fail(
      `--oidc-provider ${JSON.stringify(text.slice(0, 300))} is neither an OIDC provider ARN (arn:aws:iam::123456789012:oidc-provider/oidc.eks.REGION.amazonaws.com/id/ID) nor an issuer URL (https://oidc.eks.REGION.amazonaws.com/id/ID)`,
    );
  return {
    ok: true,
    value: m ? { issuer, arn: { partition: m[1] as string, account: m[2] as string } } : { issuer },
  };
}

/** The provider's ARN in the role's account: IRSA trusts the provider registered there. */
export function oidcProviderArn(provider: OidcProvider, role: RoleArn): Result<string> {
  const { arn } = provider;
  if (arn && (arn.partition !== role.partition || arn.account !== role.account))
    return fail(
      `--oidc-provider is registered in account ${arn.account} (${arn.partition}), but role ${role.arn} is in ${role.account} (${role.partition}): IRSA needs the cluster's OIDC provider registered in the role's own account`,
    );
  return { ok: true, value: `arn:${role.partition}:iam::${role.account}:oidc-provider/${provider.issuer}` };
}
