// The Node.js version everything here runs on: NODE_VERSION in scripts/versions.env (the one pin).
// The test runner, the bench and the demo refuse to run on another Node unless SM_INJECTOR_ANY_NODE=1
// is set: their results are claims about the pinned runtime (the e2e "image" even binds the running
// node as the image's /nodejs/bin). CI never sets it.
import { readFileSync } from "node:fs";

const versionsEnv = new URL("./versions.env", import.meta.url);
const pin = /^NODE_VERSION=(\d+)\.(\d+)\.(\d+)$/m.exec(readFileSync(versionsEnv, "utf8"));
if (!pin) throw new Error(`${versionsEnv.pathname}: no NODE_VERSION=X.Y.Z line`);

/** The pinned version without its "v", e.g. "26.12.1". */
export const PINNED_NODE_VERSION = `${pin[1]}.${pin[2]}.${pin[3]}`;
/** Its major, e.g. 26. */
export const PINNED_NODE_MAJOR = Number(pin[1]);

/**
 * Why `what` must not run on this Node (its version differs from the pin, and SM_INJECTOR_ANY_NODE=1
 * is not set), or undefined when it may. With the override, a one-line notice goes to stderr.
 */
export function refuseUnpinnedNode(what, version = process.version, env = process.env) {
  if (version === `v${PINNED_NODE_VERSION}`) return undefined;
  if (env.SM_INJECTOR_ANY_NODE === "1") {
    process.stderr.write(
      `note: ${what} runs on Node ${version}, not the pinned v${PINNED_NODE_VERSION} (SM_INJECTOR_ANY_NODE=1)\n`,
    );
    return undefined;
  }
  return [
    `${what} runs on the pinned Node.js v${PINNED_NODE_VERSION} (scripts/versions.env), but this is Node ${version}.`,
    `Put the pinned one first on PATH:  export PATH="$(bash scripts/install-node.sh):$PATH"`,
    "(or set SM_INJECTOR_ANY_NODE=1 to run on this Node anyway; its results then say nothing about the pinned one).",
  ].join("\n");
}
