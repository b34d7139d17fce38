// Drives the Outpost dashboard in headless Chromium for tests/it/dashboard.rs, step by step:
// it prints one JSON line per step on stdout and waits for the test's answer on stdin.
//
//   node tests/player/dashboard.mjs --url http://127.0.0.1:PORT/ --token T --shots DIR \
//        --edges a,b,c --kill EDGE --purge URL --drain EDGE
//
// 1. opens the page and waits for the live stream; prints {"step":"traffic", before}
// 2. after the test's "sent N", waits until the numbers moved; screenshots both schemes
// 3. prints {"step":"kill"}; after "killed", times until EDGE is down on the map and out of
//    the DNS view
// 4. purges URL from the page (token, confirmation), drains and undrains EDGE from its row,
//    and prints {"step":"done", ...}
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].slice(2)] = process.argv[i + 1];
const edges = args.edges.split(",");
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const say = (object) => process.stdout.write(JSON.stringify(object) + "\n");
const hear = async () => (await lines.next()).value;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, colorScheme: "light" });
  page.on("pageerror", (error) => errors.push(String(error)));
  page.on("console", (message) => { if (message.type() === "error") errors.push(message.text()); });
  await page.goto(args.url);
  await page.waitForSelector('#status[data-live="true"]', { timeout: 15_000 });
  await page.waitForSelector("#nodes-table tr[data-node]", { timeout: 15_000 });
  const read = () => page.evaluate((edges) => {
    const value = (selector) => { const el = document.querySelector(selector); return el && el.dataset.value !== "" ? Number(el.dataset.value) : null; };
    const perEdge = {};
    for (const edge of edges) perEdge[edge] = value(`#nodes-table tr[data-node="${edge}"] td.requests`);
    const streams = [...document.querySelectorAll("#streams-table tr[data-session]")].map((tr) => ({
      edge: tr.dataset.edge, session: tr.dataset.session,
      bitrate: tr.querySelector("td.bitrate").textContent, rebuffers: tr.querySelector("td.rebuffers").textContent,
    }));
    return { total: value("#total-requests"), hitRatio: value("#hit-ratio"), perEdge, streams };
  }, edges);
  const before = await read();
  say({ step: "traffic", before });
  const sent = Number((await hear()).split(" ")[1]);
  const trafficAt = Date.now();
  let after = before;
  while (Date.now() - trafficAt < 10_000) {
    after = await read();
    const allEdges = edges.every((e) => after.perEdge[e] > (before.perEdge[e] || 0));
    if (after.total >= (before.total || 0) + sent && allEdges && after.hitRatio !== before.hitRatio && after.streams.length > 0) break;
    await page.waitForTimeout(100);
  }
  const movedMs = Date.now() - trafficAt;
  await page.screenshot({ path: `${args.shots}/dashboard-light.png`, fullPage: true });
  await page.emulateMedia({ colorScheme: "dark" });
  await page.waitForTimeout(200);
  await page.screenshot({ path: `${args.shots}/dashboard-dark.png`, fullPage: true });
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, colorScheme: "dark" });
  await phone.goto(args.url);
  await phone.waitForSelector("#nodes-table tr[data-node]", { timeout: 15_000 });
  await phone.screenshot({ path: `${args.shots}/dashboard-phone.png`, fullPage: true });
  const phoneWidth = await phone.evaluate(() => document.documentElement.scrollWidth);
  await phone.close();
  await page.emulateMedia({ colorScheme: "light" });

  say({ step: "kill" });
  await hear();
  const killedAt = Date.now();
  let downMs = null, dnsMs = null, routingMs = null;
  while (Date.now() - killedAt < 15_000 && (downMs === null || dnsMs === null || routingMs === null)) {
    const seen = await page.evaluate((edge) => ({
      map: document.querySelector(`#nodes g.node[data-node="${edge}"]`)?.dataset.state,
      dns: document.querySelector(`#dns-edges li[data-dns-edge="${edge}"]`)?.dataset.serving,
      routed: [...document.querySelectorAll("#routing-table td.dns")].some((td) => td.textContent === edge),
    }), args.kill);
    const now = Date.now() - killedAt;
    if (downMs === null && seen.map === "down") downMs = now;
    if (dnsMs === null && seen.dns === "false") dnsMs = now;
    if (routingMs === null && !seen.routed) routingMs = now;
    await page.waitForTimeout(50);
  }

  await page.fill("#token", args.token);
  await page.selectOption("#purge-kind", "url");
  await page.fill("#purge-target", args.purge);
  await page.click("#purge-button");
  await page.waitForSelector("#confirm[open]", { timeout: 5_000 });
  const asked = await page.textContent("#confirm-text");
  await page.click("#confirm-yes");
  await page.waitForSelector('#action-result[data-ok]', { timeout: 20_000 });
  const result = await page.textContent("#action-result");
  const ok = await page.getAttribute("#action-result", "data-ok");
  await page.waitForSelector("#purges-table tr[data-seq]", { timeout: 10_000 }).catch(() => null);
  const purgeRows = await page.locator("#purges-table tr[data-seq]").count();

  // Drain an edge from its row, then undrain it: each asks first, and the map follows.
  const drained = {};
  for (const [button, state] of [["drain", "draining"], ["undrain", "up"]]) {
    const edge = args.drain;
    const started = Date.now();
    await page.click(`#nodes-table tr[data-node="${edge}"] button.${button}`);
    await page.waitForSelector("#confirm[open]", { timeout: 5_000 });
    const question = await page.textContent("#confirm-text");
    await page.click("#confirm-yes");
    await page.waitForFunction((t) => document.querySelector("#action-result").textContent !== t, drained.lastResult || result, { timeout: 10_000 });
    const answer = await page.textContent("#action-result");
    await page.waitForSelector(`#nodes g.node[data-node="${edge}"][data-state="${state}"]`, { timeout: 10_000 });
    drained[button] = { question, answer, ms: Date.now() - started };
    drained.lastResult = answer;
  }
  delete drained.lastResult;
  say({ step: "done", before, after, sent, movedMs, downMs, dnsMs, routingMs, asked, result, ok, purgeRows, drained, phoneWidth, errors });
} catch (error) {
  say({ step: "failed", error: String(error), errors });
} finally {
  await browser.close();
  process.exit(0);
}
