// The AWS edge: GetSecretValue with our own bounded, jittered retries under one overall deadline.
// The SDK's retries are switched off (maxAttempts 1) so the two layers never multiply and the
// deadline is exact; credential resolution (STS AssumeRoleWithWebIdentity, the Pod Identity agent)
// stays the SDK's default chain.
import { Agent } from "node:https";
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import type { SecretSource } from "../spec/fetch-spec.ts";
import type { FetchOutcome } from "./resolve.ts";

/** An AWS or network failure, classified. Its message comes from AWS or Node, never from a value. */
export class AwsCallError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
    readonly attempts: number,
  ) {
    super(message);
  }
}

const RETRYABLE_CODES = new Set([
  "ThrottlingException",
  "Throttling",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "InternalServiceError",
  "InternalFailure",
  "ServiceUnavailable",
  "ServiceUnavailableException",
  "RequestTimeout",
  "RequestTimeoutException",
  "TimeoutError",
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/** Codes that mean "no such secret or version": skippable for optional entries. */
const MISSING_CODES = new Set(["ResourceNotFoundException"]);

export function classify(err: unknown): { code: string; message: string; retryable: boolean } {
  const e = err as {
    name?: string;
    code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
    $retryable?: unknown;
  };
  const code = e.code && /^E[A-Z]+$/.test(e.code) ? e.code : (e.name ?? e.code ?? "Error");
  const status = e.$metadata?.httpStatusCode;
  const message = (e.message ?? String(err)).split("\n")[0] ?? "";
  const retryable =
    RETRYABLE_CODES.has(code) ||
    (status !== undefined && status >= 500) ||
    e.$retryable !== undefined ||
    /socket hang up|ECONNRESET|EPIPE|timed? ?out/i.test(message);
  return { code, message, retryable };
}

export interface FetchClientOptions {
  concurrency: number;
  /** Aborts every call and stops retrying. */
  signal: AbortSignal;
  /** Counts every GetSecretValue attempt, for the summary. */
  onAttempt?: () => void;
  maxAttempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

export class SecretFetcher {
  private readonly clients = new Map<string, SecretsManagerClient>();
  private readonly agent: Agent;

  constructor(private readonly opts: FetchClientOptions) {
    this.agent = new Agent({ keepAlive: true, maxSockets: opts.concurrency });
  }

  private client(region: string | undefined): SecretsManagerClient {
    const key = region ?? "";
    let c = this.clients.get(key);
    if (!c) {
      c = new SecretsManagerClient({
        ...(region !== undefined && { region }),
        maxAttempts: 1,
        requestHandler: new NodeHttpHandler({
          httpsAgent: this.agent,
          connectionTimeout: 3000,
          requestTimeout: 10_000,
        }),
      });
      this.clients.set(key, c);
    }
    return c;
  }

  /** One GetSecretValue, retried on throttling and transient errors until maxAttempts or the deadline. */
  async get(source: SecretSource): Promise<FetchOutcome & { attempts: number }> {
    const maxAttempts = this.opts.maxAttempts ?? 8;
    const base = this.opts.baseDelayMs ?? 100;
    const cap = this.opts.maxDelayMs ?? 5000;
    let last: { code: string; message: string; retryable: boolean } | undefined;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      if (this.opts.signal.aborted) break;
      this.opts.onAttempt?.();
      try {
        const out = await this.client(source.region).send(
          new GetSecretValueCommand({
            SecretId: source.secretId,
            ...(source.versionId !== undefined && { VersionId: source.versionId }),
            ...(source.versionStage !== undefined && { VersionStage: source.versionStage }),
          }),
          { abortSignal: this.opts.signal },
        );
        const binary = out.SecretString === undefined && out.SecretBinary !== undefined;
        const value = binary
          ? Buffer.from(out.SecretBinary as Uint8Array)
          : Buffer.from(out.SecretString ?? "", "utf8");
        return {
          secretId: source.secretId,
          ...(out.ARN !== undefined && { arn: out.ARN }),
          ...(out.VersionId !== undefined && { versionId: out.VersionId }),
          ...(out.VersionStages !== undefined && { versionStages: out.VersionStages }),
          value,
          binary,
          attempts: attempt,
        };
      } catch (err) {
        if (this.opts.signal.aborted) break;
        last = classify(err);
        if (MISSING_CODES.has(last.code)) {
          return { missing: true, reason: `${last.code}: ${missingReason(source)}`, attempts: attempt };
        }
        if (!last.retryable) throw new AwsCallError(last.code, last.message, false, attempt);
        if (attempt < maxAttempts) {
          // Full jitter: a random wait up to an exponentially growing cap.
          await sleep(Math.random() * Math.min(cap, base * 2 ** (attempt - 1)), this.opts.signal);
        } else {
          throw new AwsCallError(last.code, last.message, true, attempt);
        }
      }
    }
    if (last)
      throw new AwsCallError(last.code, `${last.message} (still failing at the deadline)`, true, maxAttempts);
    throw new AwsCallError("DeadlineExceeded", "the deadline passed before the call completed", true, 0);
  }

  destroy(): void {
    for (const c of this.clients.values()) c.destroy();
    this.agent.destroy();
  }
}

function missingReason(source: SecretSource): string {
  if (source.versionId)
    return `no version ${source.versionId} of this secret (check the version id and the region ${source.region ?? "from AWS_REGION"})`;
  if (source.versionStage)
    return `no version with stage ${source.versionStage}, or no such secret (check the name, the stage and the region ${source.region ?? "from AWS_REGION"})`;
  return `no such secret in ${source.region ?? "the region from AWS_REGION"} (check the name — names are case-sensitive — and the region)`;
}
