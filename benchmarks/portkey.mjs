// Start Portkey's gateway bound to 127.0.0.1 only (and able to stream, see below): its start-server.js listens on every interface
// and has no flag for the address, so pin the address of the listen() call it makes.
//   node portkey.mjs <path to start-server.js> --port=PORT --headless
import net from "node:net";
import { pathToFileURL } from "node:url";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "object" && args[0] !== null) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  } else if (typeof args[0] === "number" || typeof args[0] === "string") {
    if (typeof args[1] === "string") args[1] = "127.0.0.1";
    else args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
// Portkey 1.15.2 on Node appends its x-portkey-* headers to the upstream fetch() Response, whose
// headers are immutable, so every streamed call fails with "TypeError: immutable" (Portkey-AI/
// gateway issues 1389 and 1550). Hand it a copy with mutable headers, as its own fix (PR 1551) does.
const upstreamFetch = globalThis.fetch;
globalThis.fetch = async (...args) => {
  const r = await upstreamFetch(...args);
  return new Response(r.body, { status: r.status, statusText: r.statusText, headers: r.headers });
};
const entry = process.argv[2];
process.argv.splice(2, 1);
await import(pathToFileURL(entry).href);
