// The retry loop of the init container: what is retried, how often, and the overall deadline.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AwsCallError } from "../../src/fetch/errors.ts";
import { classify, DEFAULT_RETRY, type RetryPolicy, withRetries } from "../../src/fetch/retry.ts";

/** An error shaped like the SDK's service exceptions. */
function awsError(name: string, status: number, message = "m"): Error {
  return Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status } });
}
function netError(code: string): Error {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:1`), { code });
}

const FAST: RetryPolicy = { maxAttempts: 5, baseDelayMs: 1, maxDelayMs: 2 };

/** Aborts after `ms` (unlike AbortSignal.timeout, keeps the event loop alive until then). */
function deadline(ms: number): AbortSignal {
  const c = new AbortController();
  setTimeout(() => c.abort(), ms);
  return c.signal;
}

/** A call that fails with `errors` in order, then succeeds. */
function flaky(errors: Error[]) {
  let calls = 0;
  return {
    get calls() {
      return calls;
    },
    call: async () => {
      const e = errors[calls++];
      if (e) throw e;
      return "ok";
    },
  };
}

describe("what is retried", () => {
  test("throttling, 5xx and network errors are retried", () => {
    for (const e of [
      awsError("ThrottlingException", 400, "Rate exceeded"),
      awsError("InternalServiceError", 500),
      awsError("ServiceUnavailable", 503),
      awsError("SomethingNew", 502),
      netError("ECONNRESET"),
      netError("ECONNREFUSED"),
      Object.assign(new Error("socket hang up"), { name: "Error" }),
      Object.assign(new Error("timed out"), { name: "TimeoutError" }),
    ])
      assert.equal(classify(e).retryable, true, `${e.name} ${e.message}`);
  });

  test("access denied, not found, deletion, bad parameters and KMS failures are not, whatever the status", () => {
    for (const name of [
      "AccessDeniedException",
      "ResourceNotFoundException",
      "InvalidRequestException",
      "InvalidParameterException",
      "DecryptionFailure",
    ]) {
      assert.equal(classify(awsError(name, 400)).retryable, false, name);
      assert.equal(classify(awsError(name, 500)).retryable, false, name);
    }
  });

  test("the SDK's request timeout becomes a short message", () => {
    const e = Object.assign(
      new Error(
        "@smithy/node-http-handler - [ERROR] a request has exceeded the configured 333.33 ms requestTimeout.",
      ),
      { name: "TimeoutError", code: "ETIMEDOUT" },
    );
    assert.deepEqual(classify(e), {
      code: "ETIMEDOUT",
      message: "no response within 333 ms",
      retryable: true,
    });
  });

  test("the code is the AWS name or Node's errno code; the message is one line", () => {
    assert.deepEqual(classify(netError("ECONNRESET")).code, "ECONNRESET");
    assert.deepEqual(classify(awsError("ThrottlingException", 400, "Rate\nexceeded")), {
      code: "ThrottlingException",
      message: "Rate",
      retryable: true,
    });
  });
});

describe("the retry loop", () => {
  test("throttled twice, then an answer: three attempts", async () => {
    const f = flaky([awsError("ThrottlingException", 400), awsError("ThrottlingException", 400)]);
    let counted = 0;
    const r = await withRetries(f.call, {
      policy: FAST,
      signal: new AbortController().signal,
      onAttempt: () => counted++,
    });
    assert.deepEqual(r, { value: "ok", attempts: 3 });
    assert.equal(counted, 3);
  });

  test("access denied: one attempt, the code kept", async () => {
    const f = flaky([awsError("AccessDeniedException", 400, "not authorized")]);
    await assert.rejects(withRetries(f.call, { policy: FAST, signal: new AbortController().signal }), (e) => {
      assert.ok(e instanceof AwsCallError);
      assert.equal(e.code, "AccessDeniedException");
      assert.equal(e.attempts, 1);
      assert.equal(e.atDeadline, false);
      return true;
    });
    assert.equal(f.calls, 1);
  });

  test("always failing: gives up after maxAttempts with the last error", async () => {
    const f = flaky(Array.from({ length: 10 }, () => awsError("ServiceUnavailable", 503)));
    await assert.rejects(
      withRetries(f.call, { policy: FAST, signal: new AbortController().signal }),
      (e) =>
        e instanceof AwsCallError && e.code === "ServiceUnavailable" && e.attempts === 5 && !e.atDeadline,
    );
    assert.equal(f.calls, 5);
  });

  test("the deadline ends the waiting and names what kept failing", async () => {
    const f = flaky(Array.from({ length: 100 }, () => awsError("ThrottlingException", 400)));
    const t0 = performance.now();
    await assert.rejects(
      withRetries(f.call, {
        policy: { maxAttempts: 100, baseDelayMs: 1000, maxDelayMs: 1000 },
        signal: deadline(150),
        random: () => 1,
      }),
      (e) =>
        e instanceof AwsCallError && e.code === "ThrottlingException" && e.atDeadline && e.attempts === 1,
    );
    assert.ok(performance.now() - t0 < 1000, "did not sleep past the deadline");
  });

  test("no answer at all before the deadline: DeadlineExceeded", async () => {
    const hang = (signal: AbortSignal) =>
      new Promise<string>((_, reject) =>
        signal.addEventListener("abort", () => reject(new Error("aborted"))),
      );
    const signal = deadline(50);
    await assert.rejects(
      withRetries(() => hang(signal), { policy: FAST, signal }),
      (e) => e instanceof AwsCallError && e.code === "DeadlineExceeded" && e.atDeadline,
    );
  });

  test("full jitter: waits are random below an exponentially growing cap", async () => {
    const waits: number[] = [];
    const realSetTimeout = globalThis.setTimeout;
    const f = flaky(Array.from({ length: 7 }, () => awsError("ThrottlingException", 400)));
    globalThis.setTimeout = ((fn: () => void, ms: number) => {
      waits.push(ms);
      return realSetTimeout(fn, 0);
    }) as typeof setTimeout;
    try {
      await withRetries(f.call, {
        policy: DEFAULT_RETRY,
        signal: new AbortController().signal,
        random: () => 0.999,
      });
    } finally {
      globalThis.setTimeout = realSetTimeout;
    }
    assert.deepEqual(
      waits.map((w) => Math.round(w)),
      [100, 200, 400, 799, 1598, 3197, 4995],
    );
  });
});
