// The fixed-rate load generator reads keep-alive answers framed either way: Node's servers send a
// Content-Length, Go's net/http (vault-k8s in the side-by-side bench) sends bodies over 2 KiB chunked.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { responseBody } from "../../bench/open-loop.ts";

function frame(head: string, body: string): { buf: Buffer; start: number; head: string } {
  const text = `${head}\r\n\r\n`;
  return { buf: Buffer.from(text + body), start: Buffer.byteLength(text), head: head };
}

describe("responseBody", () => {
  test("Content-Length: the body, and where the next answer starts", () => {
    const f = frame("HTTP/1.1 200 OK\r\nContent-Length: 5", "hello" + "HTTP/1.1 200 OK");
    const r = responseBody(f.buf, f.start, f.head);
    assert.ok(r && r !== "invalid");
    assert.equal(r.body.toString(), "hello");
    assert.equal(f.buf.subarray(r.end).toString(), "HTTP/1.1 200 OK");
  });

  test("chunked (Go above 2 KiB): the chunks joined, up to the last chunk's empty line", () => {
    const big = "x".repeat(3000);
    const body = `${(2048).toString(16)}\r\n${big.slice(0, 2048)}\r\n${(952).toString(16)}\r\n${big.slice(2048)}\r\n0\r\n\r\n`;
    const f = frame(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked",
      `${body}NEXT`,
    );
    const r = responseBody(f.buf, f.start, f.head);
    assert.ok(r && r !== "invalid");
    assert.equal(r.body.toString(), big);
    assert.equal(f.buf.subarray(r.end).toString(), "NEXT");
  });

  test("an answer still arriving: undefined at every cut", () => {
    const body = `4\r\nabcd\r\n0\r\n\r\n`;
    const f = frame("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", body);
    for (let cut = f.start; cut < f.buf.length; cut++)
      assert.equal(responseBody(f.buf.subarray(0, cut), f.start, f.head), undefined, `cut at ${cut}`);
  });

  test("neither length nor chunked (close-delimited): invalid", () => {
    const f = frame("HTTP/1.1 200 OK\r\nConnection: close", "hello");
    assert.equal(responseBody(f.buf, f.start, f.head), "invalid");
  });
});
