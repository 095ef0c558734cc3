"""The codec server's rules: a token unless local-only, CORS for exactly the UI's two origins,
other browser origins refused, malformed bodies 400 (tests/test_ui_codec.py drives the real UI)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession, web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from cli.codec_server import CORS_ENV, LOCAL_ONLY_FLAG, TOKEN_ENV, build_app, settings, ui_origins
from runtime.encryption import EncryptionCodec, new_key_entry

KEY = new_key_entry("c")
PLAIN = json_format.MessageToJson(
    Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"}, data=b'"hi"')])
)


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def local_only() -> AsyncIterator[str]:
    runner, url = await _serve(build_app(EncryptionCodec.parse(KEY), token=None))
    yield url
    await runner.cleanup()


def test_a_token_is_required_unless_local_only() -> None:
    with pytest.raises(SystemExit):
        settings([], environ={})
    host, port, origins, token = settings(["--port", "9"], environ={TOKEN_ENV: "t"})
    assert (host, port, token) == ("127.0.0.1", 9, "t")
    assert origins == ("http://localhost:8233", "http://127.0.0.1:8233")

    host, _, origins, token = settings([LOCAL_ONLY_FLAG, "--ui-port", "9000"], environ={})
    assert (host, token) == ("127.0.0.1", None)
    assert origins == ui_origins(9000) == ("http://localhost:9000", "http://127.0.0.1:9000")
    for argv in ([LOCAL_ONLY_FLAG, "--host", "0.0.0.0"], [LOCAL_ONLY_FLAG, "--host", "::"]):
        with pytest.raises(SystemExit):  # local-only binds 127.0.0.1, nothing else
            settings(argv, environ={})
    with pytest.raises(SystemExit):  # both: ambiguous, refused
        settings([LOCAL_ONLY_FLAG], environ={TOKEN_ENV: "t"})

    _, _, origins, _ = settings(
        [], environ={TOKEN_ENV: "t", CORS_ENV: "https://ui.example/, http://x:1"}
    )
    assert origins == ("https://ui.example", "http://x:1")


async def test_cors_answers_exactly_both_ui_origins(local_only: str) -> None:
    async with ClientSession() as http:
        for origin in ui_origins():
            ask = {"Origin": origin, "Access-Control-Request-Method": "POST"}
            async with http.options(f"{local_only}/decode", headers=ask) as r:
                assert r.headers["Access-Control-Allow-Origin"] == origin
                assert "X-Namespace" in r.headers["Access-Control-Allow-Headers"]
            async with http.post(
                f"{local_only}/encode", data=PLAIN, headers={"Origin": origin}
            ) as r:
                assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == origin
        for other in ("http://evil.example", "http://localhost:8234", "https://localhost:8233"):
            ask = {"Origin": other, "Access-Control-Request-Method": "POST"}
            async with http.options(f"{local_only}/decode", headers=ask) as r:
                assert "Access-Control-Allow-Origin" not in r.headers
            async with http.post(
                f"{local_only}/encode", data=PLAIN, headers={"Origin": other}
            ) as r:
                assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers


async def test_malformed_bodies_answer_400(local_only: str) -> None:
    bodies = [
        b"",
        b"not json",
        b"\xff\xfe",
        b'{"payloads": "x"}',
        b'{"payloads": [{"data": 5}]}',
        b'{"unknown": 1}',
        b"[1, 2]",
    ]
    async with ClientSession() as http:
        for body in bodies:
            for action in ("encode", "decode"):
                async with http.post(f"{local_only}/{action}", data=body) as r:
                    assert r.status == 400, (action, body, r.status, await r.text())
        # Well formed, but not ours to decrypt: 400 too, not 500.
        foreign = json_format.MessageToJson(
            Payloads(
                payloads=[
                    Payload(
                        metadata={"encoding": b"binary/encrypted", "encryption-key-id": b"zz"},
                        data=b"x",
                    )
                ]
            )
        )
        async with http.post(f"{local_only}/decode", data=foreign) as r:
            assert r.status == 400, await r.text()


async def test_invalid_base64_answers_400_not_an_empty_payload(local_only: str) -> None:
    # protobuf's JSON reader skips characters that are not base64: "!!!" would become b"".
    invalid = ["!!!", "@@@@", "aGk=!", "a", "ab=c", "aGk=aGk="]
    async with ClientSession() as http:
        for data in invalid:
            for field in ("data", "metadata"):
                payload: dict = {"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "Imhpig=="}
                if field == "data":
                    payload["data"] = data
                else:
                    payload["metadata"] = {"encoding": data}
                body = json.dumps({"payloads": [payload]})
                for action in ("encode", "decode"):
                    async with http.post(f"{local_only}/{action}", data=body) as r:
                        text = await r.text()
                        assert r.status == 400, (action, field, data, r.status, text)
                        assert "base64" in json.loads(text)["error"], text
        # Standard and URL-safe base64, with or without padding, still read.
        for data in ("ImhpIg==", "ImhpIg", "Imhp-_8="):
            body = json.dumps(
                {"payloads": [{"metadata": {"encoding": "anNvbi9wbGFpbg"}, "data": data}]}
            )
            async with http.post(f"{local_only}/encode", data=body) as r:
                assert r.status == 200, (data, await r.text())
