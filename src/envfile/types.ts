/** The formats the init container can write. */
export const OUTPUT_FORMATS = ["shell", "dotenv", "json", "files"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** One variable to write: `value` is the exact bytes of the secret value. */
export interface EnvVar {
  name: string;
  value: Buffer;
}

/**
 * A variable that the chosen format cannot carry. The message names the variable, says what is
 * wrong and how to fix it; it never contains the value or any part of it, so it can be logged.
 */
export class EncodeError extends Error {
  override readonly name = "EncodeError";

  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(message);
  }
}
