// `sm-injector` — one binary, one image: the webhook, the init container and the offline preview.
// Each subcommand is imported lazily so that `fetch` (on every pod start) loads only what it needs.
import { VERSION } from "../version.ts";

const USAGE = `sm-injector ${VERSION} — AWS Secrets Manager secrets in Kubernetes pods, via a memory-backed env file

Usage:
  sm-injector webhook [flags]        run the mutating admission webhook (HTTPS, POST /mutate)
  sm-injector fetch                  run as the injected init container: fetch secrets, write the file
  sm-injector inject -f FILE|- [flags]  print manifests as the webhook would mutate them
  sm-injector rotation [flags]       restart workloads whose secrets got a new version
  sm-injector iam-policy -f FILE|- [flags]  least-privilege IAM policies for the pods' roles
  sm-injector dotenv -f FILE|- [flags]      a .env.example of the variables the pods receive
  sm-injector report [flags]         review every workload's secrets, versions and rotation state
  sm-injector version                print the version
  sm-injector help [COMMAND]         help for a command

Examples:
  sm-injector webhook --tls-cert-file tls.crt --tls-key-file tls.key --image ghcr.io/sm-injector/sm-injector:${VERSION}
  sm-injector inject -f deployment.yaml --diff
  kubectl get deploy api -o yaml | sm-injector inject -f -
  sm-injector iam-policy -f deployment.yaml --output terraform

Opt a pod in with the label sm-injector.io/inject: "true" and annotations such as
  sm-injector.io/env.JWT_SECRET_KEY: erp/staging/jwt/secret_key
  sm-injector.io/env.DB_PASSWORD: erp/production/rds#password
  sm-injector.io/env-from: erp/production/database
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case "help":
    case "--help":
    case "-h":
      if (command === "help" && rest[0]) return main([rest[0], "--help"]);
      process.stdout.write(USAGE);
      return 0;
    case "version":
    case "--version":
    case "-v":
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case "fetch": {
      if (rest.includes("--help") || rest.includes("-h")) {
        process.stdout.write(
          "sm-injector fetch\n\nRuns as the init container the webhook injects. Reads the compiled spec from SM_INJECTOR_SPEC,\nfetches every secret with the pod's AWS identity (IRSA or EKS Pod Identity), and writes the\noutput file atomically. Exits non-zero, writing nothing, if any required secret is missing.\n",
        );
        return 0;
      }
      const { runFetch } = await import("../fetch/index.ts");
      return runFetch({ env: process.env, stdout: process.stdout, stderr: process.stderr });
    }
    case "webhook": {
      const { runWebhookCommand } = await import("./webhook.ts");
      return runWebhookCommand(rest);
    }
    case "inject": {
      const { runInjectCommand } = await import("./inject.ts");
      return runInjectCommand(rest);
    }
    case "iam-policy": {
      const { runIamPolicyCommand } = await import("./iam-policy.ts");
      return runIamPolicyCommand(rest);
    }
    case "dotenv": {
      const { runDotenvCommand } = await import("./dotenv.ts");
      return runDotenvCommand(rest);
    }
    case "rotation": {
      const { runRotationCommand } = await import("./rotation.ts");
      return runRotationCommand(rest);
    }
    case "report": {
      const { runReportCommand } = await import("./report.ts");
      return runReportCommand(rest);
    }
    default:
      process.stderr.write(`sm-injector: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`sm-injector: ${(err as Error)?.message ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
