// Loads one page in headless Chromium over HTTP/3 only, for tests/it/http3.rs, and prints what
// protocol the page and each of its resources came over (nextHopProtocol).
//
//   node tests/player/h3.mjs URL HOST:PORT SPKI_SHA256_BASE64
//
// QUIC is forced for HOST:PORT (--origin-to-force-quic-on), the host is mapped to 127.0.0.1,
// and the edge's certificate is trusted by its key's hash (Chromium's QUIC stack does not read
// a CA given any other way in headless mode).
import { chromium } from "playwright-core";

const [url, origin, spki] = process.argv.slice(2);
const host = origin.split(":")[0];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--enable-quic",
    `--origin-to-force-quic-on=${origin}`, `--host-resolver-rules=MAP ${host} 127.0.0.1`,
    `--ignore-certificate-errors-spki-list=${spki}`],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(String(error)));
  const response = await page.goto(url);
  await page.waitForLoadState("load");
  const protocols = await page.evaluate(() => [
    ["page", performance.getEntriesByType("navigation")[0].nextHopProtocol],
    ...performance.getEntriesByType("resource").map((r) => [r.name, r.nextHopProtocol]),
  ]);
  process.stdout.write(JSON.stringify({ status: response.status(), protocols, errors }) + "\n");
} finally {
  await browser.close();
}
