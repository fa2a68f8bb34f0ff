"""A real gRPC server and client (grpcio) for the gateway's end-to-end tests.

    python3 echo.py serve                 # prints "port N", serves until killed
    python3 echo.py call HOST:PORT [CA]   # every call kind through HOST:PORT, prints JSON

Messages are raw bytes (no protobuf codegen): the gateway never looks inside them.
"""

import json
import sys
from concurrent import futures

import grpc

SERVICE = "echo.Echo"


def unary(request, context):
    context.set_trailing_metadata((("x-trailer", "unary-done"),))
    return b"echo:" + request


def server_stream(request, context):
    for i in range(int(request)):
        yield b"item-%d" % i


def client_stream(requests, context):
    return b"+".join(requests)


def bidi(requests, context):
    for message in requests:
        yield message.upper()


def fail(request, context):
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad input: " + request.decode())


def serve():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("port %d" % port, flush=True)
    server.wait_for_termination()


def status_of(error):
    return {"code": error.code().name, "details": error.details()}


def call(target, ca=None):
    if ca:
        with open(ca, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        channel = grpc.secure_channel(target, credentials)
    else:
        channel = grpc.insecure_channel(target)
    method = lambda kind, name, service=SERVICE: getattr(channel, kind)("/%s/%s" % (service, name))
    out = {}
    response, call_ = method("unary_unary", "Unary").with_call(b"hi", timeout=10)
    out["unary"] = {
        "response": response.decode(),
        "trailers": dict(call_.trailing_metadata() or ()),
    }
    out["server_stream"] = [m.decode() for m in method("unary_stream", "ServerStream")(b"3", timeout=10)]
    out["client_stream"] = method("stream_unary", "ClientStream")(iter([b"a", b"b", b"c"]), timeout=10).decode()
    out["bidi"] = [m.decode() for m in method("stream_stream", "Bidi")(iter([b"x", b"y"]), timeout=10)]
    for name, service, key in [
        ("Fail", SERVICE, "upstream_error"),
        ("Anything", "nope.Missing", "no_route"),
        ("Unary", "secure.Echo", "denied"),
    ]:
        try:
            method("unary_unary", name, service)(b"z", timeout=10)
            out[key] = {"code": "OK"}
        except grpc.RpcError as error:
            out[key] = status_of(error)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        call(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
