"""A minimal OTLP/HTTP trace collector for the end-to-end tests.

It listens on 127.0.0.1 (an ephemeral port, printed as the first line of stdout), accepts
`POST /v1/traces` bodies of `ExportTraceServiceRequest` in protobuf (what the gateway's
exporter sends), decodes each with the official OpenTelemetry protobuf classes
(`opentelemetry-proto` from PyPI) and appends every span it holds to the file named by the
first argument, one JSON object per line:

    {"service": ..., "scope": ..., "trace_id": hex, "span_id": hex, "parent_id": hex or "",
     "name": ..., "kind": int, "start": ns, "end": ns, "status": int,
     "attributes": {key: value}}

So the spans are checked by OpenTelemetry's own schema, not by the gateway's idea of it.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def value_of(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def spans_of(request):
    for resource_spans in request.resource_spans:
        resource = {a.key: value_of(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield {
                    "service": resource.get("service.name"),
                    "scope": scope_spans.scope.name,
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": span.kind,
                    "start": span.start_time_unix_nano,
                    "end": span.end_time_unix_nano,
                    "status": span.status.code,
                    "attributes": {a.key: value_of(a.value) for a in span.attributes},
                }


def main() -> None:
    out_path = sys.argv[1]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.path != "/v1/traces" or self.headers.get("content-type") != "application/x-protobuf":
                self.send_response(415 if self.path == "/v1/traces" else 404)
                self.end_headers()
                return
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            with open(out_path, "a") as out:
                for span in spans_of(request):
                    out.write(json.dumps(span) + "\n")
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
