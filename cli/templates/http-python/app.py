"""{{name}}: a wasi:http component in Python. Every request gets "Hello from {{name}}!" and the
path it asked for. componentize-py generates the `wit_world` bindings from wit/ at build time."""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class IncomingHandler(exports.IncomingHandler):
    """The export: called once per request."""

    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        respond(response_out, 200, f"Hello from {{name}}! You asked for {path}\n".encode())


def respond(response_out: ResponseOutparam, status: int, body: bytes) -> None:
    """Sends `status` with a plain-text `body`."""
    headers = Fields.from_list(
        [
            ("content-type", b"text/plain; charset=utf-8"),
            ("content-length", str(len(body)).encode()),
        ]
    )
    response = OutgoingResponse(headers)
    response.set_status_code(status)
    outgoing = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with outgoing.write() as stream:
        # One blocking write takes at most 4096 bytes.
        for start in range(0, len(body), 4096):
            stream.blocking_write_and_flush(body[start : start + 4096])
    OutgoingBody.finish(outgoing, None)
