"""A gateway filter in Python: the twin of the Rust test plugin `test-tagger`.

Config `{"name": "A"}`. On a request: answer 418 if `x-respond` names this tagger, else append
the name to `x-chain`, expose the context value `seen` as `x-seen-<name>` and extend `seen`.
On a response: append the name to `x-chain-response` and expose `seen` as `x-context-<name>`.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log
from wit_world.imports.types import (
    Header,
    HeaderChanges,
    RequestAction_Continue,
    RequestAction_Respond,
    RequestChanges,
    Response,
    ResponseAction_Continue,
    ResponseChanges,
    Settings,
)

# One component instance serves one configured use, so module state holds its config.
NAME = None


def header(headers, name):
    """First value of header `name` (case-insensitive), or None."""
    name = name.lower()
    for field in headers:
        if field.name.lower() == name:
            return field.value
    return None


def context_value(ctx, key):
    for k, v in ctx.values:
        if k == key:
            return v
    return None


def appended(existing, name):
    return name if existing is None else existing + "," + name


def set_headers(pairs):
    """Header changes that replace each named header with one value."""
    return HeaderChanges(remove=[], set=[Header(name=n, value=v) for n, v in pairs], add=[])


class Filter(exports.Filter):
    def init(self, config: str) -> Settings:
        global NAME
        try:
            parsed = json.loads(config or "{}") or {}
        except ValueError as e:
            raise Err(f"invalid config: {e}")
        if not isinstance(parsed, dict):
            raise Err("invalid config: expected a table")
        unknown = sorted(set(parsed) - {"name"})
        if unknown:
            raise Err(f"invalid config: unknown field `{unknown[0]}`, expected `name`")
        name = parsed.get("name")
        if not isinstance(name, str) or not name:
            raise Err("`name` must be a non-empty string")
        NAME = name
        return Settings(
            request_body=False, response_body=False, response_phase=True,
            request_headers=None, response_headers=None,
        )

    def on_request(self, ctx, request, body):
        log.write(log.Level.DEBUG, f"python tagger {NAME} on {request.path}")
        if header(request.headers, "x-respond") == NAME:
            return RequestAction_Respond(
                Response(
                    status=418,
                    headers=[Header(name="x-responded-by", value=NAME)],
                    body=f"short-circuit by {NAME}".encode(),
                )
            )
        seen = context_value(ctx, "seen")
        changes = set_headers(
            [
                ("x-chain", appended(header(request.headers, "x-chain"), NAME)),
                (f"x-seen-{NAME.lower()}", seen if seen is not None else "-"),
            ]
        )
        return RequestAction_Continue(
            RequestChanges(
                method=None,
                path=None,
                query=None,
                headers=changes,
                body=None,
                context=[("seen", (seen or "") + NAME)],
                response_headers=set_headers([]),
            )
        )

    def on_response(self, ctx, request, response, body):
        seen = context_value(ctx, "seen")
        changes = set_headers(
            [
                ("x-chain-response", appended(header(response.headers, "x-chain-response"), NAME)),
                (f"x-context-{NAME.lower()}", seen if seen is not None else "-"),
            ]
        )
        return ResponseAction_Continue(ResponseChanges(status=None, headers=changes, body=None))
