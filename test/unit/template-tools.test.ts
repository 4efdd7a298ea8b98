// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${…} is the template syntax under test
// The commands that read what a pod will fetch see a template's secrets like any other reference:
// `iam-policy` grants GetSecretValue on each, `dotenv` lists the composed variable with its template.
import assert from "node:assert/strict";
import { test } from "node:test";
import { envExample } from "../../src/cli/dotenv.ts";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { buildReport } from "../../src/iam/report.ts";
import { podFetchesOf } from "../../src/inject/pod-fetch.ts";

const config = InjectorConfigSchema.parse({ image: "sm-injector:test", defaultRegion: "eu-west-1" });
const MANIFEST = `
apiVersion: v1
kind: ServiceAccount
metadata:
  name: api
  namespace: erp
  annotations: { eks.amazonaws.com/role-arn: "arn:aws:iam::111122223333:role/erp-api" }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: api, namespace: erp }
spec:
  template:
    metadata:
      labels: { sm-injector.io/inject: "true" }
      annotations:
        sm-injector.io/template.DATABASE_URL: "postgresql://\${erp/production/rds#username|urlencode}:\${erp/production/rds?versionStage=AWSCURRENT#password|urlencode}@\${erp/shared/db-host}/erp?cost=$$5"
    spec:
      serviceAccountName: api
      containers: [{ name: app, image: app:1 }]
`;

test("iam-policy grants GetSecretValue on every secret a template reads", async () => {
  const { pods, errors } = await podFetchesOf(MANIFEST, config);
  assert.deepEqual(errors, []);
  const r = buildReport({ roleArns: [], kmsKeyArns: [] }, pods);
  assert.deepEqual(r.errors, []);
  const resources = r.report.roles[0]?.policy.Statement.flatMap((s) => s.Resource);
  assert.deepEqual([...new Set(resources)].sort(), [
    "arn:aws:secretsmanager:eu-west-1:111122223333:secret:erp/production/rds-??????",
    "arn:aws:secretsmanager:eu-west-1:111122223333:secret:erp/shared/db-host-??????",
  ]);
});

test("dotenv lists the composed variable, with its template as the comment and no value", async () => {
  const { pods } = await podFetchesOf(MANIFEST, config);
  const text = envExample(pods, "app.yaml");
  assert.match(
    text,
    /\n# composed by the template postgresql:\/\/\$\{erp\/production\/rds#username\|urlencode\}:\$\{erp\/production\/rds\?versionStage=AWSCURRENT#password\|urlencode\}@\$\{erp\/shared\/db-host\}\/erp\?cost=\$\$5\nDATABASE_URL=\n/,
  );
});
