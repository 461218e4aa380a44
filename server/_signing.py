"""Signed reports: RSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) with a 3072-bit key.

A signed PDF is the report followed by a trailer of PDF comment lines, which PDF readers ignore::

    <report bytes, ending in %%EOF>
    %AgentWatch-Signature: v1 alg=RSA-PSS-SHA256 salt=32 signed-bytes=<N> key=sha256:<hex> sig=<base64>
    %AgentWatch-Public-Key: <base64 DER SubjectPublicKeyInfo>
    %%EOF

The signature covers the first N bytes (everything before the trailer), so the file verifies on its own;
the embedded key proves integrity, and its fingerprint, compared with the server's
(``GET /api/reports/public-key``), proves origin. The same signature is sent in the
``X-AgentWatch-Signature`` header. With openssl: ``head -c N report.pdf > signed.bin`` and
``openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -verify key.pem
-signature sig.bin signed.bin``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["ReportSigner", "verify_report", "fingerprint_of", "load_public_key"]

_MARKER = b"\n%AgentWatch-Signature: "
_LINE = re.compile(
    rb"^%AgentWatch-Signature: v1 alg=RSA-PSS-SHA256 salt=32 signed-bytes=(\d+) key=(sha256:[0-9a-f]{64})"
    rb" sig=([A-Za-z0-9+/=]+)\n%AgentWatch-Public-Key: ([A-Za-z0-9+/=]+)\n%%EOF\n?$"
)
_KEY_BITS = 3072
_SALT = 32


def _padding() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=_SALT)


def _der(public_key: rsa.RSAPublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint_of(public_key: rsa.RSAPublicKey) -> str:
    return "sha256:" + hashlib.sha256(_der(public_key)).hexdigest()


def load_public_key(pem_or_der: bytes) -> rsa.RSAPublicKey:
    """A public key from PEM or DER; a private key file is accepted too (its public half is used)."""
    data = pem_or_der.strip()
    key: Any
    try:
        if data.startswith(b"-----BEGIN") and b"PRIVATE KEY" in data.split(b"\n", 1)[0]:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        elif data.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except TypeError:  # what cryptography raises for a private key that needs a password
        raise ValueError("the private key is encrypted: give its public key") from None
    except UnsupportedAlgorithm as error:
        raise ValueError(f"unsupported key: {error}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


class ReportSigner:
    """Holds the server's signing key: loaded from ``path``, or generated there (mode 0600) on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key = self._load_or_create(path)
        self.public_key = self._key.public_key()
        self.fingerprint = fingerprint_of(self.public_key)

    @staticmethod
    def _load_or_create(path: Path) -> rsa.RSAPrivateKey:
        if not path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written aside, then linked into place: another server process starting at the same moment
            # either wins the link or reads a complete key, never a half-written one.
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(pem)
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass
            finally:
                temporary.unlink()
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError(f"{path} does not hold an RSA private key")
        return loaded

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, document: bytes) -> tuple[bytes, bytes]:
        """Returns (signed document with trailer, detached signature)."""
        if not document.endswith(b"\n"):
            document += b"\n"
        signature = self._key.sign(document, _padding(), hashes.SHA256())
        trailer = (f"%AgentWatch-Signature: v1 alg=RSA-PSS-SHA256 salt={_SALT} signed-bytes={len(document)}"
                   f" key={self.fingerprint} sig={base64.b64encode(signature).decode()}\n"
                   f"%AgentWatch-Public-Key: {base64.b64encode(_der(self.public_key)).decode()}\n%%EOF\n")
        return document + trailer.encode("ascii"), signature


def verify_report(data: bytes, trusted: set[str] | None = None, detached: bytes | None = None) -> dict[str, Any]:
    """Check a signed report. ``valid``: untampered since signing; ``trusted``: signed by a key in ``trusted``."""
    result: dict[str, Any] = {"valid": False, "trusted": False, "key_fingerprint": None, "signed_bytes": None,
                              "algorithm": "RSA-PSS-SHA256", "reason": None}
    position = data.rfind(_MARKER)
    if position < 0:
        result["reason"] = "no AgentWatch signature found in the file"
        return result
    start = position + 1
    match = _LINE.match(data[start:])
    if match is None:
        result["reason"] = "signature trailer is malformed or followed by other data"
        return result
    signed_bytes, fingerprint = int(match.group(1)), match.group(2).decode()
    result["signed_bytes"], result["key_fingerprint"] = signed_bytes, fingerprint
    if signed_bytes != start:
        result["reason"] = "signed length does not match the file"
        return result
    try:
        signature = base64.b64decode(match.group(3), validate=True)
        public_key = load_public_key(base64.b64decode(match.group(4), validate=True))
    except (binascii.Error, ValueError) as error:
        result["reason"] = f"signature or key cannot be decoded: {error}"
        return result
    if fingerprint_of(public_key) != fingerprint:
        result["reason"] = "embedded key does not match the key fingerprint"
        return result
    content = data[:start]
    try:
        public_key.verify(signature, content, _padding(), hashes.SHA256())
        if detached is not None:
            public_key.verify(detached, content, _padding(), hashes.SHA256())
    except InvalidSignature:
        result["reason"] = "signature does not match the content: the file was modified"
        return result
    result["valid"] = True
    result["trusted"] = bool(trusted) and fingerprint in (trusted or set())
    result["reason"] = ("signed by a trusted key" if result["trusted"]
                        else "intact, but signed by a key that is not the one given as trusted")
    return result
