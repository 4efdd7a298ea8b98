// The status the kubelet reports for a pod whose sm-injector init container has finished: what the
// rotation controller reads (exit code, termination message with the versions fetched).
import type { V1ContainerStatus } from "@kubernetes/client-node";

/** The sm-injector-fetch init container's status after it exited with `exitCode` and wrote `message`. */
export function fetchFinished(message: string, exitCode = 0): V1ContainerStatus {
  return {
    name: "sm-injector-fetch",
    image: "x",
    imageID: "",
    ready: false,
    restartCount: 0,
    state: { terminated: { exitCode, message } },
  };
}
