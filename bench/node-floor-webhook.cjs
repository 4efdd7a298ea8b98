// The least a Node.js admission webhook can be (bench/vault-k8s.ts loads it beside sm-injector and
// vault-k8s): node:https, read the AdmissionReview, parse it, allow the pod without a patch. No
// framework, no validation, no log, no metrics. Nothing ships this; it measures the runtime's share
// of the memory and throughput ratios.
//
//   node bench/node-floor-webhook.cjs PORT CERT_FILE KEY_FILE
"use strict";
const https = require("node:https");
const { readFileSync } = require("node:fs");

const [port, cert, key] = process.argv.slice(2);
https
  .createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
    if (req.method !== "POST") {
      res.writeHead(200).end("ok");
      return;
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const review = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      res.writeHead(200, { "content-type": "application/json" }).end(
        JSON.stringify({
          apiVersion: "admission.k8s.io/v1",
          kind: "AdmissionReview",
          response: { uid: review.request.uid, allowed: true },
        }),
      );
    });
  })
  .listen(Number(port), "127.0.0.1");
