"""What closes SeaweedFS's ports other than S3 in the embedded default: its `security.toml`.

`weed mini` opens, besides S3 (which checks the S3 keys itself), the master, volume and filer
HTTP ports, a gRPC port for each of them and for S3, and the admin server's HTTP and gRPC
ports. Without a `security.toml` every one of them serves anyone on the machine: the filer hands
out any object by its path and takes writes, the master deletes a bucket's volumes on
`/col/delete`, and `weed shell` reads and rewrites all metadata over gRPC. So at each start
(before `weed` runs, in the directory it runs in, which it reads `./security.toml` from):

- **mutual TLS on every one of those ports**: `[grpc.*]` for the gRPC servers and the clients
  inside `weed`, `[https.master|volume|filer|admin]` for the HTTP servers and `[https.client]`
  for the requests `weed` makes to them. Each demands a client certificate signed by a CA made
  here for this installation; the CA's private key is dropped as soon as it has signed the one
  certificate `weed` uses, so no other certificate can ever be issued. The certificate and its
  key are under `seaweedfs/tls/` (the key 0600, in the private home).
- **signed tokens (JWT)** on top, on the volume server (`jwt.signing`, `jwt.signing.read`) and
  the filer (`jwt.filer_signing`, `jwt.filer_signing.read`): even a client holding the
  certificate reads or writes data only with a token signed by one of these keys.

All of it is made afresh at each start: nothing on disk depends on it (tokens live 10 s, the
certificates only authenticate live connections). docflow itself uses `client_ssl_context` only
to ask the master whether every volume is registered.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import secrets
import ssl
from pathlib import Path

from embedded.credentials import private_dir, write_private
from embedded.processes import LOOPBACK

SECURITY_FILE = "security.toml"
# The gRPC servers and clients inside `weed mini` that read a `[grpc.<name>]` section.
GRPC_COMPONENTS = ("master", "volume", "filer", "s3", "admin", "worker", "client")
# Its HTTP servers that take `[https.<name>]` (S3 stays plain HTTP with its signed requests).
HTTPS_SERVERS = ("master", "volume", "filer", "admin")
JWT_KEYS = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")
# Renewed at each start; long enough that a server left running for years keeps talking to
# itself.
CERTIFICATE_DAYS = 3650


def tls_dir(root: Path) -> Path:
    return root / "tls"


def write_security(root: Path) -> Path:
    """Make a CA, the certificate `weed` serves and connects with, and the token keys, and
    write `root/security.toml` naming them. Returns its path."""
    tls = private_dir(tls_dir(root))
    ca_pem, cert_pem, key_pem = _issue_certificate()
    (tls / "ca.crt").write_bytes(ca_pem)
    (tls / "weed.crt").write_bytes(cert_pem)
    write_private(tls / "weed.key", key_pem.decode())

    def quoted(path: Path) -> str:
        return json.dumps(str(path))  # a JSON string is a valid TOML basic string

    ca, cert, key = quoted(tls / "ca.crt"), quoted(tls / "weed.crt"), quoted(tls / "weed.key")
    lines = ["# Written by docflow at each start of SeaweedFS (embedded/seaweedfs_security.py)."]
    for table in JWT_KEYS:
        lines += [f"[{table}]", f'key = "{secrets.token_hex(32)}"', ""]
    lines += ["[access]", "ui = false", "", "[grpc]", f"ca = {ca}", ""]
    for name in GRPC_COMPONENTS:
        lines += [f"[grpc.{name}]", f"cert = {cert}", f"key = {key}", ""]
    lines += ["[https.client]", "enabled = true", f"cert = {cert}", f"key = {key}", f"ca = {ca}"]
    for name in HTTPS_SERVERS:
        lines += ["", f"[https.{name}]", f"cert = {cert}", f"key = {key}", f"ca = {ca}"]
    path = root / SECURITY_FILE
    write_private(path, "\n".join(lines) + "\n")
    return path


def client_ssl_context(root: Path) -> ssl.SSLContext:
    """TLS with `weed`'s own certificate, checking the server's against the installation's CA."""
    tls = tls_dir(root)
    context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    context.load_cert_chain(tls / "weed.crt", tls / "weed.key")
    return context


def _issue_certificate() -> tuple[bytes, bytes, bytes]:
    """(CA certificate, leaf certificate, leaf key) as PEM. The leaf is for 127.0.0.1 and
    localhost, for servers and clients alike; the CA's key is not returned, so it is gone."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=CERTIFICATE_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "docflow embedded SeaweedFS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "docflow-seaweedfs")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca.public_bytes(pem), leaf.public_bytes(pem), key_pem
