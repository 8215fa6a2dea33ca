"""Azurite's Blob service (from the npm registry) over HTTPS, for the ADLS connector's tests.

Installed once into ``~/.cache/cairn/azurite/<version>`` with ``npm install``; needs Node.js
(``node``, ``npm``) on the PATH. It runs in memory, with a self-signed certificate for
127.0.0.1 (the SDK sends bearer tokens over HTTPS only) and ``--oauth basic``, which accepts
any unexpired token from a Microsoft issuer without checking its signature: enough to run
``DefaultAzureCredential`` for real against :class:`TokenEndpoint`, a stand-in for the App
Service managed-identity endpoint.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.servers.processes import ServerSetupError, cache_dir, locked, run_step, terminate

VERSION = "3.37.0"
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, in every Azure storage emulator's docs).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def install() -> Path:
    """Path of the ``azurite-blob`` script, installing Azurite first if needed."""
    base = cache_dir("azurite")
    prefix = base / VERSION
    script = prefix / "node_modules" / ".bin" / "azurite-blob"
    with locked(base / ".lock"):
        if not script.exists():
            prefix.mkdir(parents=True, exist_ok=True)
            run_step(
                f"installing azurite@{VERSION} from the npm registry (npm install)",
                [
                    "npm",
                    "install",
                    "--prefix",
                    str(prefix),
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    f"azurite@{VERSION}",
                ],
                timeout=900,
            )
    if not script.exists():
        raise ServerSetupError(f"installing azurite@{VERSION}: {script} is missing afterwards")
    return script


def self_signed(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files for 127.0.0.1, valid for a day; the cert is its own CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "azurite-cert.pem", folder / "azurite-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Azurite:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = work_dir / "azurite.log"
        self.ca_file = work_dir / "azurite-cert.pem"
        self.startup_s = 0.0

    @property
    def endpoint(self) -> str:
        """The account's Blob endpoint, as CAIRN_AZURE_ENDPOINT takes it."""
        return f"https://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=https;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={self.endpoint};"
        )

    def start(self, timeout: float = 60) -> Azurite:
        started = time.monotonic()
        script = install()
        node = shutil.which("node")
        if node is None:
            raise ServerSetupError("starting Azurite: 'node' is not on the PATH")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        cert, key = self_signed(self.work_dir)
        self.ca_file = cert
        self.port = _free_port()
        argv = [
            node,
            str(script.resolve()),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
            "--inMemoryPersistence",
            "--extentMemoryLimit",
            "512",
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
            "--oauth",
            "basic",
            "--cert",
            str(cert),
            "--key",
            str(key),
        ]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.work_dir
            )
        context = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerSetupError(
                    f"starting Azurite: it exited with code {self.proc.returncode}:\n"
                    + self.log_path.read_text(errors="replace")[-3000:]
                )
            try:
                with (
                    socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw,
                    context.wrap_socket(raw, server_hostname="127.0.0.1"),
                ):
                    self.startup_s = time.monotonic() - started
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise ServerSetupError(f"starting Azurite: no TLS answer on port {self.port} in time")

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)

    def service(self) -> Any:
        """A BlobServiceClient with the account key, for setting up containers in tests."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(
            self.endpoint,
            credential={"account_name": ACCOUNT, "account_key": KEY},
            connection_verify=str(self.ca_file),
        )


class TokenEndpoint:
    """The App Service managed-identity endpoint, as azure-identity calls it: it hands out
    unsigned tokens that Azurite's ``--oauth basic`` accepts. Set IDENTITY_ENDPOINT and
    IDENTITY_HEADER from :meth:`env` and ``DefaultAzureCredential`` finds it."""

    header = "cairn-test-identity-header"

    def __init__(self) -> None:
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.headers.get("X-IDENTITY-HEADER") != outer.header:
                    self.send_error(401)
                    return
                outer.calls += 1
                body = json.dumps(outer._token()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def _token() -> dict[str, Any]:
        now = int(time.time())

        def part(obj: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

        claims = {
            "aud": "https://storage.azure.com",
            "iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/",
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 3600,
            "oid": "00000000-0000-0000-0000-00000000ca1f",
        }
        token = f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.sig"
        return {
            "access_token": token,
            "expires_on": str(now + 3600),
            "resource": "https://storage.azure.com",
            "token_type": "Bearer",
        }

    def start(self) -> TokenEndpoint:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self) -> dict[str, str]:
        host, port = self.server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server's address
        return {
            "IDENTITY_ENDPOINT": f"http://{host}:{port}/msi/token",
            "IDENTITY_HEADER": self.header,
        }
