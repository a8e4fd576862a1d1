// Serve worker.mjs on loopback with N fresh D1 databases (DB0 ... DB{N-1}); print the URL, stop at stdin EOF.
// Usage: node serve.mjs NODE_MODULES_DIR N
import path from "node:path";
import { pathToFileURL, fileURLToPath } from "node:url";

const [modules, count] = process.argv.slice(2);
const { Miniflare } = await import(pathToFileURL(path.join(modules, "miniflare", "dist", "src", "index.js")).href);
const d1Databases = {};
for (let i = 0; i < Number(count); i++) d1Databases["DB" + i] = `conformance-${i}`;
const here = path.dirname(fileURLToPath(import.meta.url));
const mf = new Miniflare({
  modules: true,
  scriptPath: path.join(here, "worker.mjs"),
  compatibilityDate: "2026-04-26",
  d1Databases,
  host: "127.0.0.1",
  port: 0,
});
const url = await mf.ready;
process.stdout.write(`${url}\n`);
process.stdin.resume();
process.stdin.on("end", async () => {
  await mf.dispose();
  process.exit(0);
});
