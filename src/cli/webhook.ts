// `sm-injector webhook`: configuration errors exit 2 with the list of problems; SIGTERM drains.
import { ConfigError, loadWebhookConfig, WEBHOOK_OPTIONS } from "../webhook/config.ts";
import { startWebhook } from "../webhook/server.ts";

export function webhookHelp(): string {
  const rows = Object.entries(WEBHOOK_OPTIONS).map(
    ([flag, [env, desc]]) => `  --${flag.padEnd(30)} ${env.padEnd(42)} ${desc}`,
  );
  return `sm-injector webhook [flags]\n\nRuns the mutating admission webhook over HTTPS: POST /mutate, GET /healthz, /readyz, /metrics.\nEvery flag can also be given as an environment variable; flags win.\n\n${rows.join("\n")}\n  --shutdown-delay-seconds N      SM_INJECTOR_SHUTDOWN_DELAY_SECONDS  keep serving N s after SIGTERM, unready (default 0)\n`;
}

export async function runWebhookCommand(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(webhookHelp());
    return 0;
  }
  let delaySeconds = Number(process.env.SM_INJECTOR_SHUTDOWN_DELAY_SECONDS ?? 0);
  const args = [...argv];
  const i = args.findIndex(
    (a) => a === "--shutdown-delay-seconds" || a.startsWith("--shutdown-delay-seconds="),
  );
  if (i !== -1) {
    const a = args[i] as string;
    const value = a.includes("=") ? a.slice(a.indexOf("=") + 1) : args[i + 1];
    args.splice(i, a.includes("=") ? 1 : 2);
    delaySeconds = Number(value);
  }
  if (!Number.isFinite(delaySeconds) || delaySeconds < 0 || delaySeconds > 300) {
    process.stderr.write(
      "sm-injector webhook: --shutdown-delay-seconds must be a number of seconds from 0 to 300\n",
    );
    return 2;
  }
  let config: ReturnType<typeof loadWebhookConfig>;
  try {
    config = loadWebhookConfig(args, process.env);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`sm-injector webhook: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  const running = await startWebhook(config);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onInt);
      running.webhook.setReady(false);
      running.webhook.app.log.info({ signal, delaySeconds }, "shutting down: draining in-flight admissions");
      setTimeout(() => void running.close().then(resolve), delaySeconds * 1000);
    };
    const onTerm = () => stop("SIGTERM");
    const onInt = () => stop("SIGINT");
    process.on("SIGTERM", onTerm);
    process.on("SIGINT", onInt);
    process.on("SIGHUP", () => void running.reloadTls());
  });
  return 0;
}
