// A budget of request-body bytes the webhook holds at once. Each request with a body reserves its
// declared size (Content-Length, or the body limit when it is sent chunked) before a byte is read,
// and gives it back when its response is finished or its connection dies. A request that does not
// fit is refused at once instead of being read, so unfinished bodies can never hold more memory
// than the budget, whatever the number of clients.
//
// Large bodies may only use part of the budget: a few clients sending multi-megabyte bodies
// slowly must not starve the small AdmissionReviews every ordinary pod produces (5-50 KB).

export interface BodyBudgetOptions {
  /** Bytes of bodies in flight at most. */
  totalBytes: number;
  /** A body larger than this is "large". */
  largeBodyBytes: number;
  /** Bytes of large bodies in flight at most (default half the total). */
  largeShareBytes?: number;
}

export interface BodyBudget {
  /** Reserves `bytes`; returns the release function, or undefined when they do not fit. */
  tryReserve(bytes: number): (() => void) | undefined;
  inFlightBytes(): number;
}

export function createBodyBudget(opts: BodyBudgetOptions): BodyBudget {
  const largeShare = opts.largeShareBytes ?? Math.floor(opts.totalBytes / 2);
  let total = 0;
  let large = 0;
  return {
    inFlightBytes: () => total,
    tryReserve(bytes) {
      const isLarge = bytes > opts.largeBodyBytes;
      if (total + bytes > opts.totalBytes) return undefined;
      if (isLarge && large + bytes > largeShare) return undefined;
      total += bytes;
      if (isLarge) large += bytes;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        total -= bytes;
        if (isLarge) large -= bytes;
      };
    },
  };
}

/**
 * What a request must reserve: its Content-Length (capped at the body limit: a larger one is refused
 * with 413 before it is read), the body limit when the length is not declared (chunked), or 0 when
 * it has no body.
 */
export function declaredBodyBytes(
  headers: { "content-length"?: string; "transfer-encoding"?: string },
  bodyLimitBytes: number,
): number {
  const length = headers["content-length"];
  if (length !== undefined) {
    const n = Number(length);
    return Number.isSafeInteger(n) && n >= 0 ? Math.min(n, bodyLimitBytes) : bodyLimitBytes;
  }
  return headers["transfer-encoding"] !== undefined ? bodyLimitBytes : 0;
}
