// A wasi:http handler written in JavaScript (the fetch-event API ComponentizeJS provides).
import { getEnvironment } from "wasi:cli/environment@0.2.10";

addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  const greeting = new Map(getEnvironment()).get("GREETING") ?? "Hello";
  if (request.method === "POST") {
    const body = await request.text();
    return new Response(body, { headers: { "content-type": "text/plain", "x-lang": "js" } });
  }
  return new Response(`${greeting} from JS: ${request.method} ${url.pathname}\n`, {
    headers: { "content-type": "text/plain", "x-lang": "js" },
  });
}
