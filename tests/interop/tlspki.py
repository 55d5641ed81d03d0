"""A throw-away PKI for the TLS tests, made with the ``openssl`` command at test time into a
temporary directory (no key is ever committed): CAs, server certificates for ``localhost``
and ``127.0.0.1``, and client certificates, with the extensions ``tests/test-pki.cnf`` names.
EC P-256 keys, valid for two days.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The sections (CA, server, client) are shared with the JS TLS test.
OPENSSL_CNF = Path(__file__).resolve().parent.parent / "test-pki.cnf"


@dataclass
class Cert:
    """A certificate and its key, as PEM files."""

    pem: Path
    key: Path

    @property
    def der(self) -> bytes:
        return ssl.PEM_cert_to_DER_cert(self.pem.read_text())

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    def sha1_colons(self) -> str:
        """The SHA-1 fingerprint as ``openssl x509 -fingerprint`` (and Crossbar) write it."""
        return ":".join(f"{b:02X}" for b in hashlib.sha1(self.der).digest())

    def install(self, cert_to: Path, key_to: Path):
        """Copy certificate and key to these paths (what a certificate renewal does)."""
        shutil.copyfile(self.pem, cert_to)
        shutil.copyfile(self.key, key_to)


class Pki:
    def __init__(self, directory: Path):
        self.dir = directory
        self.cnf = OPENSSL_CNF

    def _run(self, *args: str):
        r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)}: {r.stderr}")

    def _newkey(self) -> list[str]:
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def ca(self, name: str) -> Cert:
        c = Cert(self.dir / f"{name}.pem", self.dir / f"{name}.key")
        self._run("req", "-x509", *self._newkey(), "-keyout", str(c.key), "-out", str(c.pem), "-days", "2",
                  "-subj", f"/CN={name}", "-config", str(self.cnf), "-extensions", "ca")
        return c

    def leaf(self, name: str, ca: Cert, kind: str = "server") -> Cert:
        """A certificate signed by ``ca``; ``kind``: ``server`` or ``client``."""
        c = Cert(self.dir / f"{name}.pem", self.dir / f"{name}.key")
        csr = self.dir / f"{name}.csr"
        self._run("req", "-new", *self._newkey(), "-keyout", str(c.key), "-out", str(csr),
                  "-subj", f"/CN={name}", "-config", str(self.cnf))
        self._run("x509", "-req", "-in", str(csr), "-CA", str(ca.pem), "-CAkey", str(ca.key),
                  "-set_serial", str(secrets.randbits(62)), "-days", "2", "-out", str(c.pem),
                  "-extfile", str(self.cnf), "-extensions", kind)
        return c


@contextlib.contextmanager
def temporary_pki(prefix: str):
    """A ``Pki`` in a new temporary directory, removed (with every key in it) afterwards."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield Pki(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def client_context(ca: Cert, client: Cert | None = None) -> ssl.SSLContext:
    """A client's context trusting ``ca`` (hostname checked), presenting ``client`` if given."""
    ctx = ssl.create_default_context(cafile=str(ca.pem))
    if client is not None:
        ctx.load_cert_chain(str(client.pem), str(client.key))
    return ctx
