// Which AWS failures are worth another try, and the retry loop itself: bounded attempts, full
// jitter, one overall deadline. No AWS SDK here, so it is tested with fake calls.
import { AwsCallError, MALFORMED_CODE } from "./errors.ts";

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
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/**
 * Never retried, whatever the HTTP status: another try cannot change the answer. Access denied, no
 * such secret, a secret marked for deletion (InvalidRequestException), a bad parameter, a KMS
 * decryption failure.
 */
const FINAL_CODES = new Set([
  "AccessDeniedException",
  "AccessDenied",
  "ResourceNotFoundException",
  "InvalidRequestException",
  "InvalidParameterException",
  "DecryptionFailure",
  "ValidationException",
]);

export interface Classified {
  code: string;
  /** First line of the AWS or Node message; AwsCallError cleans and caps it. */
  message: string;
  retryable: boolean;
}

/**
 * Said instead of the parser's message, which quotes the text it failed on: the start of a
 * SecretString, or the credentials in an STS answer.
 */
const MALFORMED_MESSAGE = "the answer could not be parsed (its text is not shown: it may hold a secret)";

/**
 * Whether the SDK failed to parse an answer: it marks the parser's error with $responseBodyText;
 * JSON.parse's errors are SyntaxErrors. Not retried: a well-formed answer does not come from
 * asking again, and the kubelet restarts the init container anyway.
 */
function isParseFailure(e: { name?: string; $responseBodyText?: unknown }): boolean {
  return e.name === "SyntaxError" || e.$responseBodyText !== undefined;
}

export function classify(err: unknown): Classified {
  const e = (err ?? {}) as {
    name?: string;
    code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
    $retryable?: unknown;
    $responseBodyText?: unknown;
  };
  if (isParseFailure(e)) return { code: MALFORMED_CODE, message: MALFORMED_MESSAGE, retryable: false };
  // Node's network errors carry their errno name in `code`; AWS errors theirs in `name`.
  const code = e.code && /^E[A-Z]+$/.test(e.code) ? e.code : (e.name ?? e.code ?? "Error");
  const status = e.$metadata?.httpStatusCode;
  let message = String(e.message ?? err).split("\n")[0] ?? "";
  const timeout = /exceeded the configured (\d+)(?:\.\d+)? ms requestTimeout/.exec(message);
  if (timeout) message = `no response within ${timeout[1]} ms`;
  if (FINAL_CODES.has(code)) return { code, message, retryable: false };
  const retryable =
    RETRYABLE_CODES.has(code) ||
    (status !== undefined && status >= 500) ||
    e.$retryable !== undefined ||
    /socket hang up|ECONNRESET|EPIPE/i.test(message);
  return { code, message, retryable };
}

export interface RetryPolicy {
  /** Attempts per call, the first included. */
  maxAttempts: number;
  /** Full jitter: before attempt n+1, wait a random time in [0, min(maxDelayMs, baseDelayMs·2^(n-1))). */
  baseDelayMs: number;
  maxDelayMs: number;
}

/**
 * 8 attempts, waits capped at 100 ms, 200 ms, … 5 s: about 6 s of waiting on average before giving
 * up, well inside the default 60 s deadline; the kubelet's restart of the failed init container is
 * the next layer.
 */
export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 8, baseDelayMs: 100, maxDelayMs: 5000 };

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

export interface RetryOptions {
  policy: RetryPolicy;
  /** The overall deadline: ends the wait and the retries. `call` must honour it too. */
  signal: AbortSignal;
  /** Called before every attempt (to count API calls). */
  onAttempt?: () => void;
  random?: () => number;
}

/**
 * Calls `call` until it succeeds, fails with an error that is not retryable, runs out of attempts
 * or the deadline passes. Throws AwsCallError: the last error's code, or DeadlineExceeded when no
 * attempt got an answer.
 */
export async function withRetries<T>(
  call: () => Promise<T>,
  opts: RetryOptions,
): Promise<{ value: T; attempts: number }> {
  const { policy, signal } = opts;
  const random = opts.random ?? Math.random;
  let last: Classified | undefined;
  let attempt = 0;
  while (attempt < policy.maxAttempts && !signal.aborted) {
    attempt++;
    opts.onAttempt?.();
    try {
      return { value: await call(), attempts: attempt };
    } catch (err) {
      if (signal.aborted) break; // the deadline, not this attempt, ended it
      last = classify(err);
      if (!last.retryable) throw new AwsCallError(last.code, last.message, "call", attempt);
      if (attempt < policy.maxAttempts)
        await sleep(random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1)), signal);
    }
  }
  if (signal.aborted) {
    // Name what kept failing, if anything did; otherwise nothing answered in time.
    throw last
      ? new AwsCallError(last.code, last.message, "call", attempt, true)
      : new AwsCallError("DeadlineExceeded", "no answer before the deadline", "call", attempt, true);
  }
  const l = last as Classified;
  throw new AwsCallError(l.code, l.message, "call", attempt);
}
