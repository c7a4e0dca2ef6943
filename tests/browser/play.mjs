// Drive headless Chromium (Debian's, through playwright-core) to play a Lectern stream.
//
//   node play.mjs MODE MASTER_URL [SECONDS [CAPTIONS]]
//
// MODE is `hlsjs`, `reactplayer`, `shaka` (Shaka Player) or `videojs` (Video.js with VHS).
// With CAPTIONS (a language), the player's text track in that language is turned on and the
// run lasts until one of its cues has shown; the report lists the tracks and the cues seen.
// Serves the page from its own origin (so CORS is
// exercised), waits until playback passes SECONDS or fails, prints one JSON line.
import http from "node:http";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { chromium } from "playwright-core";

const [mode, src, seconds = "4", captions = ""] = process.argv.slice(2);
const here = dirname(fileURLToPath(import.meta.url));

const bundle = await esbuild.build({
  entryPoints: [join(here, "page.jsx")],
  bundle: true,
  write: false,
  format: "esm",
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "error",
});
const js = bundle.outputFiles[0].text;
const html = `<!doctype html><html><body><div id="root"></div><script type="module" src="/page.js"></script></body></html>`;
const server = http.createServer((req, res) => {
  if (req.url.startsWith("/page.js")) {
    res.writeHead(200, { "content-type": "text/javascript" });
    res.end(js);
  } else {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(html);
  }
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const pageUrl = `http://127.0.0.1:${server.address().port}/?mode=${mode}&seconds=${seconds}&captions=${captions}&src=${encodeURIComponent(src)}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
  ],
});
let result;
try {
  const page = await browser.newPage();
  const console_ = [];
  page.on("console", (m) => console_.push(m.text()));
  page.on("pageerror", (e) => console_.push(`pageerror: ${e.message}`));
  page.on("requestfailed", (r) => console_.push(`failed: ${r.url().split("?")[0]} ${r.failure() && r.failure().errorText}`));
  if (process.env.PLAY_TRACE) page.on("request", (r) => console_.push(`request: ${r.url().split("?")[0]}`));
  await page.goto(pageUrl);
  try {
    await page.waitForFunction(() => window.__result, null, { timeout: 90_000 });
    result = await page.evaluate(() => window.__result);
  } catch (e) {
    const state = await page.evaluate(() => {
      const v = document.querySelector("hls-video, video");
      return v ? { currentTime: v.currentTime, readyState: v.readyState, paused: v.paused } : null;
    });
    result = { ok: false, error: `timed out: ${e.message}`, state };
  }
  result.console = console_.slice(-20);
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(result));
