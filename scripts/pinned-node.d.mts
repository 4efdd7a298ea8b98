export declare const PINNED_NODE_VERSION: string;
export declare const PINNED_NODE_MAJOR: number;
export declare function refuseUnpinnedNode(
  what: string,
  version?: string,
  env?: Record<string, string | undefined>,
): string | undefined;
