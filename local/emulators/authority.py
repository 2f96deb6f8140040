"""An Entra ID authority for msal's client-credentials flow, over TLS on 127.0.0.1.

msal refuses http authorities, so this serves HTTPS with a certificate signed by a throwaway CA
written to `--cert-dir`, together with `ca-bundle.pem` (certifi's bundle plus that CA) for
`REQUESTS_CA_BUNDLE`. `python -m local.emulators.authority --cert-dir D --tenant-id T --client-id C
--client-secret S` prints `ready https://127.0.0.1:<port>`; the authority is `<that>/<tenant>`.

Control API: `GET /_emulator/stats`; `POST /_emulator/faults {"script": [{"status": 503, "error":
"temporarily_unavailable", "description": "AADSTS...", "retry_after": 1, "raw": "<not JSON>"}, ...]}`
answers the next token requests with those failures, one step each, in order; `DELETE /_emulator/faults`
forgets the script.
"""
from __future__ import annotations

import argparse
import datetime
import hmac
import ipaddress
import json
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from local.emulators import tokens
from local.emulators.httpserver import EmulatorHandler, EmulatorServer, run_until_signalled

DEFAULT_TOKEN_TTL_SECONDS = 3600
CA_BUNDLE_NAME = "ca-bundle.pem"
_DEFAULT_SCOPE_SUFFIX = "/.default"
_OIDC_SCOPES = {"openid", "profile", "offline_access"}


@dataclass(frozen=True)
class Client:
    tenant_id: str
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path
    ca_bundle: Path


def write_certificates(cert_dir: Path) -> CertFiles:
    """Create a CA and a server certificate for 127.0.0.1/localhost in `cert_dir`; return the paths."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lead push local emulator CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = CertFiles(cert_dir / "server.pem", cert_dir / "server-key.pem", cert_dir / CA_BUNDLE_NAME)
    files.cert.write_bytes(cert.public_bytes(pem))
    files.key.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    files.key.chmod(0o600)
    files.ca_bundle.write_bytes(
        Path(certifi.where()).read_bytes().rstrip(b"\n") + b"\n" + ca_cert.public_bytes(pem)
    )
    return files


class AuthorityServer(EmulatorServer):
    scheme = "https"

    def __init__(self, address: tuple[str, int], *, client: Client, certs: CertFiles, token_ttl: int) -> None:
        super().__init__(address, AuthorityHandler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certs.cert, certs.key)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.client = client
        self.certs = certs
        self.token_ttl = token_ttl
        self.lock = threading.Lock()
        self.tokens_issued = 0
        self.token_requests = 0
        self.fault_script: list[dict] = []

    def next_fault(self) -> dict | None:
        """Count a token request; the scripted failure to answer it with, if any."""
        with self.lock:
            self.token_requests += 1
            return self.fault_script.pop(0) if self.fault_script else None

    @property
    def authority(self) -> str:
        return f"{self.url}/{self.client.tenant_id}"

    def openid_configuration(self) -> dict:
        base = self.authority
        return {
            "issuer": f"{base}/v2.0",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "grant_types_supported": ["client_credentials"],
            "tenant_region_scope": None,
        }


class AuthorityHandler(EmulatorHandler):
    server: AuthorityServer

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_emulator/stats":
            with self.server.lock:
                stats = {
                    "tokens_issued": self.server.tokens_issued,
                    "token_requests": self.server.token_requests,
                    "faults_remaining": len(self.server.fault_script),
                }
            self.respond_json(200, stats)
        elif path == f"/{self.server.client.tenant_id}/v2.0/.well-known/openid-configuration":
            self.respond_json(200, self.server.openid_configuration())
        else:
            self._oauth_error(404, "invalid_request", f"AADSTS90002: no route for {path}.")

    def do_POST(self) -> None:
        body = self.read_body()
        if urlsplit(self.path).path == "/_emulator/faults":
            self._set_faults(body)
            return
        if urlsplit(self.path).path != f"/{self.server.client.tenant_id}/oauth2/v2.0/token":
            self._oauth_error(404, "invalid_request", "AADSTS90002: Tenant or endpoint not found.")
            return
        form = {name: values[0] for name, values in parse_qs(body.decode("utf-8", "replace")).items()}
        self._token(form)

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path != "/_emulator/faults":
            self._oauth_error(404, "invalid_request", "AADSTS90002: no such route.")
            return
        with self.server.lock:
            self.server.fault_script = []
        self.respond(204)

    def _set_faults(self, body: bytes) -> None:
        try:
            steps = [_fault_step(step) for step in json.loads(body)["script"]]
        except (ValueError, KeyError, TypeError) as exc:
            self._oauth_error(400, "invalid_request", f"bad fault script: {exc}")
            return
        with self.server.lock:
            self.server.fault_script = steps
        self.respond_json(200, {"faults_remaining": len(steps)})

    def _token(self, form: dict[str, str]) -> None:
        fault = self.server.next_fault()
        if fault is not None:
            headers = [("Retry-After", str(fault["retry_after"]))] if fault["retry_after"] is not None else []
            if fault["raw"] is not None:
                self.respond(fault["status"], fault["raw"].encode(), [("Content-Type", "text/html"), *headers])
            else:
                self._oauth_error(fault["status"], fault["error"], fault["description"], headers)
            return
        client = self.server.client
        if form.get("grant_type") != "client_credentials":
            self._oauth_error(400, "unsupported_grant_type", "AADSTS70003: only client_credentials is supported.")
            return
        secret_ok = hmac.compare_digest(form.get("client_secret", ""), client.client_secret)
        if form.get("client_id") != client.client_id or not secret_ok:
            self._oauth_error(
                401, "invalid_client", "AADSTS7000215: Invalid client secret provided, or unknown client_id."
            )
            return
        scopes = [s for s in form.get("scope", "").split() if s not in _OIDC_SCOPES]
        if len(scopes) != 1 or not scopes[0].endswith(_DEFAULT_SCOPE_SUFFIX):
            self._oauth_error(
                400,
                "invalid_scope",
                "AADSTS1002012: The provided value for scope is not valid. Client credential flows must "
                "have a scope value with /.default suffixed to the resource identifier.",
            )
            return
        resource = scopes[0][: -len(_DEFAULT_SCOPE_SUFFIX)]
        token, _ = tokens.mint(
            resource, subject=client.client_id, app_id=client.client_id, ttl_seconds=self.server.token_ttl
        )
        with self.server.lock:
            self.server.tokens_issued += 1
        ttl = self.server.token_ttl
        self.respond_json(
            200,
            {"token_type": "Bearer", "expires_in": ttl, "ext_expires_in": ttl, "access_token": token},
            [("Cache-Control", "no-store")],
        )

    def _oauth_error(
        self, status: int, error: str, description: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        body = {"error": error, "error_description": description, "error_codes": []}
        self.respond_json(status, body, headers or [])


def _fault_step(step: dict) -> dict:
    """A validated script step. Raises ValueError, KeyError or TypeError for a malformed one."""
    status = int(step["status"])
    if not 400 <= status <= 599:
        raise ValueError(f"status must be an error status, got {status}")
    raw, retry_after = step.get("raw"), step.get("retry_after")
    return {
        "status": status,
        "error": str(step.get("error") or "temporarily_unavailable"),
        "description": str(
            step.get("description") or "AADSTS50000: There was an error issuing a token or an issue with our sign-in service."
        ),
        "retry_after": None if retry_after is None else int(retry_after),
        "raw": None if raw is None else str(raw),
    }


def serve(
    host: str,
    port: int,
    *,
    cert_dir: Path,
    client: Client,
    token_ttl: int = DEFAULT_TOKEN_TTL_SECONDS,
) -> AuthorityServer:
    """Write the certificates, then start the authority in a background thread; stop with `.shutdown()`."""
    certs = write_certificates(cert_dir)
    return AuthorityServer((host, port), client=client, certs=certs, token_ttl=token_ttl).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.emulators.authority", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert-dir", type=Path, required=True)
    parser.add_argument("--tenant-id", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--token-ttl", type=int, default=DEFAULT_TOKEN_TTL_SECONDS)
    args = parser.parse_args(argv)
    client = Client(args.tenant_id, args.client_id, args.client_secret)
    server = serve(args.host, args.port, cert_dir=args.cert_dir, client=client, token_ttl=args.token_ttl)
    run_until_signalled(server, server.url)


if __name__ == "__main__":
    main()
