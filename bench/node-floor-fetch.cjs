// The least any Node.js init container can do (bench/peers.ts runs it beside `sm-injector fetch` and
// the Go peer): start Node, load node:http, send one GetSecretValue to moto — unsigned (moto does not
// check signatures), no SDK, no credentials, no retries, no validation, no log — and write the
// SecretString to a file. Nothing ships this; it measures the runtime's share of the ratio.
//
//   AWS_ENDPOINT_URL=http://127.0.0.1:PORT FLOOR_SECRET_ID=NAME FLOOR_OUTPUT=FILE node bench/node-floor-fetch.cjs
"use strict";
const http = require("node:http");
const { writeFileSync } = require("node:fs");

const endpoint = new URL(process.env.AWS_ENDPOINT_URL);
const body = JSON.stringify({ SecretId: process.env.FLOOR_SECRET_ID });
const req = http.request(
  {
    method: "POST",
    host: endpoint.hostname,
    port: endpoint.port,
    path: "/",
    headers: {
      "content-type": "application/x-amz-json-1.1",
      "x-amz-target": "secretsmanager.GetSecretValue",
      // moto reads the access key (its account) from here and verifies nothing else.
      authorization:
        "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
    },
  },
  (res) => {
    const chunks = [];
    res.on("data", (c) => chunks.push(c));
    res.on("end", () => {
      if (res.statusCode !== 200) {
        process.stderr.write(`moto answered ${res.statusCode}\n`);
        process.exitCode = 1;
        return;
      }
      const { SecretString } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      writeFileSync(process.env.FLOOR_OUTPUT, `SECRET_0=${SecretString}\n`);
    });
  },
);
req.on("error", (e) => {
  process.stderr.write(`${e.message}\n`);
  process.exitCode = 1;
});
req.end(body);
