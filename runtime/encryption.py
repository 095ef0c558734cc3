"""End-to-end payload encryption: an AES-GCM codec with rotating keys.

``DURABLE_SESSIONS_ENCRYPTION_KEYS="k2:<base64>,k1:<base64>"``: the first key encrypts, every key
decrypts (by the key id each payload carries), so a key rotates by putting a new one first and
dropping the old one once nothing written with it is still needed. Keys are 16, 24 or 32 bytes.
``python -m runtime.encryption genkey [id]`` prints a new entry.
"""

from __future__ import annotations

import base64
import binascii
import os
import sys
from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

KEYS_ENV = "DURABLE_SESSIONS_ENCRYPTION_KEYS"
ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12


class EncryptionCodec(PayloadCodec):
    """Encrypts each payload whole (data and metadata) under the current key."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError(f"current key {current!r} is not among the keys")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current = current

    @classmethod
    def parse(cls, spec: str) -> EncryptionCodec:
        """Keys from ``"id:base64key,..."``; the first is current."""
        keys: dict[str, bytes] = {}
        for n, entry in enumerate(filter(None, (e.strip() for e in spec.split(","))), 1):
            key_id, sep, encoded = entry.partition(":")
            if not sep or not key_id:
                raise ValueError(f"{KEYS_ENV} entry {n} is not 'id:base64key'")
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"{KEYS_ENV} entry {n} ({key_id!r}): bad base64") from exc
            if len(key) not in (16, 24, 32):
                raise ValueError(
                    f"{KEYS_ENV} entry {n} ({key_id!r}): AES keys are 16, 24 or 32 bytes, "
                    f"not {len(key)}"
                )
            if key_id in keys:
                raise ValueError(f"{KEYS_ENV}: key id {key_id!r} appears twice")
            keys[key_id] = key
        if not keys:
            raise ValueError(f"{KEYS_ENV} has no keys")
        return cls(keys, next(iter(keys)))

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(p) for p in payloads]

    def _encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        key_id = self.current.encode()
        # The key id is bound as associated data: a payload cannot be passed off under another.
        sealed = self._ciphers[self.current].encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: key_id},
            data=nonce + sealed,
        )

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before encryption was turned on
        key_id = payload.metadata.get(KEY_ID, b"").decode()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise ValueError(
                f"payload encrypted with key {key_id!r}, which is not in {KEYS_ENV} "
                f"(known: {', '.join(sorted(self._ciphers))})"
            )
        data = cipher.decrypt(
            payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], key_id.encode()
        )
        decoded = Payload()
        decoded.ParseFromString(data)
        return decoded


def codec_from_env(environ: Mapping[str, str] = os.environ) -> EncryptionCodec | None:
    """The codec the environment configures, or None when encryption is off."""
    spec = environ.get(KEYS_ENV, "").strip()
    return EncryptionCodec.parse(spec) if spec else None


def new_key_entry(key_id: str = "k1") -> str:
    return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


if __name__ == "__main__":
    if sys.argv[1:2] != ["genkey"]:
        sys.exit("usage: python -m runtime.encryption genkey [key-id]")
    print(new_key_entry(*sys.argv[2:3]))
