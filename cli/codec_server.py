"""A codec server: lets the Temporal UI and ``temporal workflow show --codec-endpoint`` read
encrypted sessions.

    python -m cli.codec_server --port 8081

It speaks Temporal's remote-codec protocol (POST ``/encode`` and ``/decode`` with
``{"payloads": [...]}`` in protobuf JSON), answers CORS only to the UI's origin
(``$DURABLE_SESSIONS_CODEC_CORS_ORIGIN``, default ``http://localhost:8233``) and, when
``$DURABLE_SESSIONS_CODEC_TOKEN`` is set, only to ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import argparse
import hmac
import os
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

from runtime.encryption import KEYS_ENV, codec_from_env

CORS_ENV = "DURABLE_SESSIONS_CODEC_CORS_ORIGIN"
TOKEN_ENV = "DURABLE_SESSIONS_CODEC_TOKEN"
DEFAULT_ORIGIN = "http://localhost:8233"


def build_app(
    codec: PayloadCodec, *, origin: str = DEFAULT_ORIGIN, token: str | None = None
) -> web.Application:
    """The codec server's routes for one codec, UI origin and (optional) bearer token."""

    def cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        if request.headers.get("Origin") == origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "POST"
            response.headers["Access-Control-Allow-Headers"] = (
                "Content-Type,X-Namespace,Authorization"
            )
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Vary"] = "Origin"
        return response

    async def preflight(request: web.Request) -> web.StreamResponse:
        return cors(request, web.Response())

    def handler(
        apply: Callable[[Sequence[Payload]], Awaitable[list[Payload]]],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if token is not None:
                sent = request.headers.get("Authorization", "")
                if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                    return cors(request, web.json_response({"error": "unauthorized"}, status=401))
            payloads = json_format.Parse(await request.read(), Payloads())
            try:
                converted = await apply(list(payloads.payloads))
            except Exception as exc:  # a payload this server cannot decode: say which, not 500
                return cors(request, web.json_response({"error": str(exc)}, status=400))
            body = json_format.MessageToJson(Payloads(payloads=converted))
            return cors(request, web.Response(text=body, content_type="application/json"))

        return handle

    app = web.Application()
    app.router.add_route("OPTIONS", "/{action:(encode|decode)}", preflight)
    app.router.add_post("/encode", handler(codec.encode))
    app.router.add_post("/decode", handler(codec.decode))
    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    codec = codec_from_env()
    if codec is None:
        raise SystemExit(f"set {KEYS_ENV} to the keys the workers use")
    origin = os.environ.get(CORS_ENV, DEFAULT_ORIGIN)
    web.run_app(
        build_app(codec, origin=origin, token=os.environ.get(TOKEN_ENV) or None),
        host=args.host,
        port=args.port,
    )


if __name__ == "__main__":
    main()
