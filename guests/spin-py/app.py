"""A Spin app in Python (PyPI spin-sdk 5.0.0, componentize-py): routes, a variable and a
key-value store, served by Spark from its own spin.toml.

- GET /            a greeting
- GET /greeting    the component variable `greeting` (from the app variable, which
                   SPIN_VARIABLE_GREETING overrides)
- GET /count       a counter kept in the default store, raised on every call
- GET|PUT|DELETE /kv/<key>   read, write and delete a key of the default store
"""

from spin_sdk import http, key_value, variables
from spin_sdk.http import Request, Response


def text(status: int, body: str) -> Response:
    return Response(status, {"content-type": "text/plain"}, bytes(body, "utf-8"))


class HttpHandler(http.Handler):
    async def handle_request(self, request: Request) -> Response:
        path = request.uri.split("?", 1)[0]
        if path == "/":
            return text(200, "Hello from Python on Spark!\n")
        if path == "/greeting":
            return text(200, await variables.get("greeting") + "\n")
        store = await key_value.open_default()
        if path == "/count":
            current = await store.get("count")
            count = int(current or b"0") + 1
            await store.set("count", bytes(str(count), "utf-8"))
            return text(200, f"{count}\n")
        if path.startswith("/kv/") and len(path) > 4:
            key = path[4:]
            if request.method == "GET":
                value = await store.get(key)
                if value is None:
                    return text(404, f"no key {key}\n")
                return Response(200, {"content-type": "application/octet-stream"}, value)
            if request.method == "PUT":
                await store.set(key, request.body or b"")
                return text(200, "stored\n")
            if request.method == "DELETE":
                await store.delete(key)
                return text(200, "deleted\n")
            return text(405, "use GET, PUT or DELETE\n")
        return text(404, "not found\n")
