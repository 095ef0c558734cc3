"""A codec server: lets the Temporal UI and ``temporal workflow show --codec-endpoint`` read
encrypted sessions.

    DURABLE_SESSIONS_CODEC_TOKEN=some-token python -m cli.codec_server --port 8081
    python -m cli.codec_server --local-only-no-token --port 8081   # for ./run.sh's embedded UI

It speaks Temporal's remote-codec protocol (POST ``/encode`` and ``/decode`` with
``{"payloads": [...]}`` in protobuf JSON) and decrypts for whoever it answers, so it answers only

- requests with ``Authorization: Bearer $DURABLE_SESSIONS_CODEC_TOKEN`` (required), or, started
  with ``--local-only-no-token``, any request on 127.0.0.1 (it binds nothing else): the embedded
  dev server's UI sends no token (it has no login to take one from), and every process on the
  machine can then decode;
- browsers on the UI's origins: CORS for exactly ``http://localhost:<ui-port>`` and
  ``http://127.0.0.1:<ui-port>`` (``--ui-port``, default 8233; or the comma-separated
  ``$DURABLE_SESSIONS_CODEC_CORS_ORIGIN``), and a request from any other origin is refused (403).

A body that is not a payload list (invalid base64 included) answers 400, a payload it cannot
decrypt 400 too.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

from runtime.encryption import KEYS_ENV, codec_from_env

CORS_ENV = "DURABLE_SESSIONS_CODEC_CORS_ORIGIN"
TOKEN_ENV = "DURABLE_SESSIONS_CODEC_TOKEN"
DEFAULT_UI_PORT = 8233
LOCAL_ONLY_FLAG = "--local-only-no-token"
LOCAL_HOST = "127.0.0.1"


def ui_origins(ui_port: int = DEFAULT_UI_PORT) -> tuple[str, ...]:
    """The two origins a browser gives a UI on this machine's port ``ui_port``."""
    return (f"http://localhost:{ui_port}", f"http://127.0.0.1:{ui_port}")


def build_app(
    codec: PayloadCodec,
    *,
    origins: Iterable[str] = ui_origins(),
    token: str | None,
) -> web.Application:
    """The codec server's routes for one codec, the UI's origins and a bearer token (None: no
    token, for a server that listens on 127.0.0.1 only)."""
    allowed = frozenset(origins)

    def cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "POST"
            response.headers["Access-Control-Allow-Headers"] = (
                "Content-Type,X-Namespace,Authorization"
            )
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Max-Age"] = "600"
        response.headers["Vary"] = "Origin"
        return response

    def error(request: web.Request, status: int, message: str) -> web.StreamResponse:
        return cors(request, web.json_response({"error": message}, status=status))

    async def preflight(request: web.Request) -> web.StreamResponse:
        return cors(request, web.Response())

    def handler(
        apply: Callable[[Sequence[Payload]], Awaitable[list[Payload]]],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            origin = request.headers.get("Origin")
            if origin is not None and origin not in allowed:
                # A page of another site in the user's browser: never decode for it.
                return error(request, 403, f"origin {origin} is not the UI's")
            if token is not None:
                sent = request.headers.get("Authorization", "")
                if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                    return error(request, 401, "unauthorized")
            try:
                payloads = parse_payloads(await request.read())
            except (json_format.ParseError, UnicodeDecodeError, ValueError) as exc:
                return error(request, 400, f"the body is not a payload list: {exc}")
            try:
                converted = await apply(list(payloads.payloads))
            except Exception as exc:  # a payload this server cannot decode: say which, not 500
                return error(request, 400, str(exc))
            body = json_format.MessageToJson(Payloads(payloads=converted))
            return cors(request, web.Response(text=body, content_type="application/json"))

        return handle

    app = web.Application()
    app.router.add_route("OPTIONS", "/{action:(encode|decode)}", preflight)
    app.router.add_post("/encode", handler(codec.encode))
    app.router.add_post("/decode", handler(codec.decode))
    return app


#: Base64 as protobuf's JSON writes it (standard or URL-safe alphabet, padding optional).
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}|[A-Za-z0-9_-]*={0,2}")


def parse_payloads(raw: bytes) -> Payloads:
    """A payload list from protobuf JSON, its bytes fields strictly base64: protobuf's reader
    skips characters outside the alphabet, so ``"!!!"`` would be read as an empty payload."""
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object with 'payloads'")
    for i, payload in enumerate(doc.get("payloads") or []):
        if not isinstance(payload, dict):
            continue  # protobuf's reader refuses it
        _check_base64(f"payloads[{i}].data", payload.get("data"))
        metadata = payload.get("metadata")
        for key, value in (metadata or {}).items() if isinstance(metadata, dict) else ():
            _check_base64(f"payloads[{i}].metadata.{key}", value)
    return json_format.ParseDict(doc, Payloads())


def _check_base64(field: str, value: object) -> None:
    if not isinstance(value, str):
        return  # absent, or a wrong type protobuf's reader refuses
    unpadded = value.rstrip("=")
    if (
        not _BASE64.fullmatch(value)
        or len(unpadded) % 4 == 1
        or (unpadded != value and len(value) % 4 != 0)
    ):
        raise ValueError(f"{field} is not valid base64")


def settings(
    argv: Sequence[str] | None = None, environ: dict[str, str] | None = None
) -> tuple[str, int, tuple[str, ...], str | None]:
    """(host, port, CORS origins, token) from the command line and the environment; exits with a
    message when neither a token nor the local-only flag is given."""
    env = dict(os.environ if environ is None else environ)
    parser = argparse.ArgumentParser(
        prog="python -m cli.codec_server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default=LOCAL_HOST, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument(
        "--ui-port",
        type=int,
        default=DEFAULT_UI_PORT,
        help="the UI's port: CORS for http://localhost:PORT and http://127.0.0.1:PORT "
        f"(default {DEFAULT_UI_PORT}, ./run.sh's UI; ${CORS_ENV} overrides)",
    )
    parser.add_argument(
        LOCAL_ONLY_FLAG,
        action="store_true",
        dest="local_only",
        help="answer without a token, on 127.0.0.1 only: for ./run.sh's embedded UI, which "
        "cannot send one (any process on this machine can then decode)",
    )
    args = parser.parse_args(argv)
    token = env.get(TOKEN_ENV) or None
    if args.local_only:
        if token is not None:
            parser.error(f"{LOCAL_ONLY_FLAG} answers without a token: unset {TOKEN_ENV}")
        if args.host != LOCAL_HOST:
            parser.error(f"{LOCAL_ONLY_FLAG} binds {LOCAL_HOST} only (not {args.host})")
    elif token is None:
        parser.error(
            f"set {TOKEN_ENV} (clients send 'Authorization: Bearer <token>'), or pass "
            f"{LOCAL_ONLY_FLAG} for ./run.sh's embedded UI on this machine"
        )
    raw = env.get(CORS_ENV, "")
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    return args.host, args.port, origins or ui_origins(args.ui_port), token


def main(argv: Sequence[str] | None = None) -> None:
    host, port, origins, token = settings(argv)
    codec = codec_from_env()
    if codec is None:
        raise SystemExit(f"set {KEYS_ENV} to the keys the workers use")
    web.run_app(build_app(codec, origins=origins, token=token), host=host, port=port)


if __name__ == "__main__":
    main()
