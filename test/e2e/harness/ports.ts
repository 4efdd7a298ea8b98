import { createServer } from "node:net";

/**
 * A free TCP port on a loopback address: binds to port 0, reads the port the kernel chose and closes
 * the socket. Another process could take the port before it is used; the ports handed out by this
 * process are remembered so that one test process never gets the same port twice.
 */
const handedOut = new Set<number>();

export async function getFreePort(host = "127.0.0.1"): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.unref();
      server.once("error", reject);
      server.listen({ host, port: 0, exclusive: true }, () => {
        const address = server.address();
        if (address === null || typeof address === "string") {
          server.close();
          reject(new Error(`could not read the port bound on ${host}`));
          return;
        }
        server.close(() => resolve(address.port));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port found on ${host}`);
}

/** `count` distinct free loopback ports. */
export async function getFreePorts(count: number, host = "127.0.0.1"): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await getFreePort(host));
  return ports;
}
