// End-to-end test of the node's dashboard in headless Chromium (Playwright, no bundled browser).
//
//   node tests/browser/dashboard.mjs <login-url> --modules a,b [--mode surge] [--screenshot FILE]
//
// Logs in through the one-time link, checks the session cookie is HttpOnly and the link cannot
// be used twice, waits for every module's row, then prints "READY" (the caller starts its load)
// and waits for the mode to switch on in the page, optionally taking a screenshot once it has.
// Prints "OK" and exits 0 when all held; anything else exits 1 with the reason.
import { chromium } from "playwright-core";

const args = process.argv.slice(2);
const url = args[0];
const opt = (name) => {
  const i = args.indexOf(name);
  return i > 0 ? args[i + 1] : undefined;
};
const modules = (opt("--modules") || "").split(",").filter(Boolean);
const mode = opt("--mode");
const screenshot = opt("--screenshot");
const executablePath = process.env.SPARK_CHROMIUM || "/usr/bin/chromium";

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}
if (!url || !url.includes("/dashboard/login?code=")) fail(`give the login URL, not ${url}`);

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1100 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`${r.status()} for ${r.url()}`); });

  const response = await page.goto(url);
  if (!response || response.status() !== 200) fail(`login answered ${response && response.status()}`);
  if (new URL(page.url()).pathname !== "/dashboard") fail(`login did not land on /dashboard: ${page.url()}`);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "spark_session");
  if (!session) fail("no session cookie");
  if (!session.httpOnly || session.sameSite !== "Strict") fail(`cookie not HttpOnly+Strict: ${JSON.stringify(session)}`);
  if ((await page.evaluate(() => document.cookie)).includes("spark_session")) fail("the script can read the session");

  // The link works once: a second browser gets the 401 page.
  const other = await browser.newContext();
  const again = await (await other.newPage()).goto(url);
  if (again.status() !== 401) fail(`a used link answered ${again.status()}`);
  await other.close();

  await page.waitForSelector("body[data-ready=true]", { timeout: 10_000 });
  for (const id of modules) {
    await page.waitForSelector(`#modules tr[data-module="${id}"]`, { timeout: 10_000 });
  }
  if (mode) {
    const before = await page.getAttribute(`#modes li[data-mode="${mode}"]`, "data-on");
    if (before !== "false") fail(`mode ${mode} is ${before} before the load`);
  }
  console.log("READY");
  if (mode) {
    await page.waitForSelector(`#modes li[data-mode="${mode}"][data-on="true"]`, { timeout: 30_000 });
    console.log(`MODE ${mode} on`);
    // A decision saying why is on the page too.
    await page.waitForFunction((m) =>
      Array.from(document.querySelectorAll("#decisions tbody td")).some((td) => td.textContent.includes(m)),
      mode, { timeout: 10_000 });
  }
  if (screenshot) {
    await page.waitForTimeout(2_500); // a few polls, so rates and p99 are filled in
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`SCREENSHOT ${screenshot}`);
  }
  if (problems.length) fail(problems.join("; "));
  console.log("OK");
} catch (e) {
  fail(e.message);
} finally {
  await browser.close();
}
