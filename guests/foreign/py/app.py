"""A wasi:http handler written in Python (componentize-py bindings of the proxy world)."""

import os

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def read_body(request: IncomingRequest) -> bytes:
    body = request.consume()
    stream = body.stream()
    chunks = []
    while True:
        try:
            chunks.append(stream.blocking_read(65536))
        except Exception:
            break
    stream.__exit__(None, None, None)
    return b"".join(chunks)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        if isinstance(request.method(), Method_Post):
            payload = read_body(request)
        else:
            greeting = os.environ.get("GREETING", "Hello")
            path = (request.path_with_query() or "/").split("?")[0]
            method = type(request.method()).__name__.removeprefix("Method_").upper()
            payload = f"{greeting} from Python: {method} {path}\n".encode()
        headers = Fields.from_list([("content-type", b"text/plain"), ("x-lang", b"python")])
        response = OutgoingResponse(headers)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        stream = body.write()
        for start in range(0, len(payload), 4096):
            stream.blocking_write_and_flush(payload[start : start + 4096])
        stream.__exit__(None, None, None)
        OutgoingBody.finish(body, None)
