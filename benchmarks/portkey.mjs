// Start Portkey's gateway bound to 127.0.0.1 only: its start-server.js listens on every interface
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
const entry = process.argv[2];
process.argv.splice(2, 1);
await import(pathToFileURL(entry).href);
