#!/usr/bin/env python3
"""A token-auth container registry for tests/bench.sh, the way ACR and Docker Hub serve one.

Usage: registry_lab.py DIR REGISTRY_IP AUTH_IP DATA_IP

Runs, until stdin closes (in the bench's `cloud` namespace):
- Debian's `docker-registry` (distribution 2.8) on REGISTRY_IP:443 as `registry.lab`, token
  auth, blobs redirected (307) to `https://data.lab/`;
- its token service on AUTH_IP:443 as `auth.lab` (`/token`, Basic auth, ES256 JWTs with
  an `x5c` header the registry verifies against DIR/token-root.pem);
- the data endpoint on DATA_IP:443 as `data.lab` (200 to anything);
and pushes a one-layer image `registry.lab/azureiotedge-agent:1.5` first. Writes DIR/ca.pem
(the TLS root of all three) and prints `ready` once everything answers.
"""
import base64
import datetime
import hashlib
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

REGISTRY, AUTH, DATA = "registry.lab", "auth.lab", "data.lab"
REPO, TAG = "azureiotedge-agent", "1.5"
USER, PASSWORD = "edge", "Registry-Pw-7f3a9c1e"
ISSUER = "edgeprobe-bench-token-service"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def certificate(subject, key, issuer=None, issuer_key=None, names=(), ca=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


class Lab:
    def __init__(self, root):
        self.root = root
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = certificate("edgeprobe bench registry CA", self.ca_key, ca=True)
        with open(os.path.join(root, "ca.pem"), "w") as f:
            f.write(pem(self.ca))
        # The token signer: self-signed, the registry's rootcertbundle.
        self.signer_key = ec.generate_private_key(ec.SECP256R1())
        self.signer = certificate("edgeprobe bench token signer", self.signer_key, ca=True)
        with open(os.path.join(root, "token-root.pem"), "w") as f:
            f.write(pem(self.signer))

    def tls(self, host):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = certificate(host, key, self.ca, self.ca_key, names=[host])
        cert_path = os.path.join(self.root, f"{host}.crt")
        key_path = os.path.join(self.root, f"{host}.key")
        with open(cert_path, "w") as f:
            f.write(pem(cert))
        with open(key_path, "w") as f:
            f.write(key_pem(key))
        return cert_path, key_path

    def token(self, subject, actions):
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self.signer.public_bytes(serialization.Encoding.DER)).decode()]}
        claims = {"iss": ISSUER, "sub": subject, "aud": REGISTRY, "exp": now + 600,
                  "nbf": now - 60, "iat": now, "jti": os.urandom(8).hex(),
                  "access": [{"type": "repository", "name": REPO, "actions": actions}] if actions else []}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        der = self.signer_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def serve(ip, cert, handler):
    server = http.server.ThreadingHTTPServer((ip, 443), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main():
    root, registry_ip, auth_ip, data_ip = sys.argv[1:5]
    lab = Lab(root)

    # Headers and body go out as two writes: without TCP_NODELAY the body would wait for the
    # client's delayed ACK (a round trip or more), which real registries do not make one wait.
    class Token(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_GET(self):
            query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
            basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            scope = query.get("scope", [""])[0]
            if self.headers.get("authorization") != basic:
                body, status = b'{"details":"invalid credentials"}', 401
            else:
                actions = ["pull"] if scope == f"repository:{REPO}:pull" else []
                body, status = json.dumps({"token": lab.token(USER, actions)}).encode(), 200
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Data(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def answer(self, body):
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("content-length", "2")
            self.end_headers()
            if body:
                self.wfile.write(b"ok")

        def do_GET(self):
            self.answer(True)

        def do_HEAD(self):
            self.answer(False)

        def log_message(self, *args):
            pass

    serve(auth_ip, lab.tls(AUTH), Token)
    serve(data_ip, lab.tls(DATA), Data)

    registry_cert = lab.tls(REGISTRY)
    data_dir = os.path.join(root, "data")
    os.makedirs(data_dir, exist_ok=True)
    config = os.path.join(root, "registry.yml")
    with open(config, "w") as f:
        f.write(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {data_dir}
http:
  addr: {registry_ip}:443
  secret: edgeprobe-bench-secret
  tls:
    certificate: {registry_cert[0]}
    key: {registry_cert[1]}
auth:
  token:
    realm: https://{AUTH}/token
    service: {REGISTRY}
    issuer: {ISSUER}
    rootcertbundle: {os.path.join(root, "token-root.pem")}
middleware:
  storage:
    - name: redirect
      options:
        baseurl: https://{DATA}/
""")
    log = open(os.path.join(root, "registry.log"), "w")
    child = subprocess.Popen(["/usr/bin/docker-registry", "serve", config],
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        for _ in range(200):
            try:
                socket.create_connection((registry_ip, 443), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        push(lab, registry_ip)
        print("ready", flush=True)
        sys.stdin.read()
    finally:
        child.terminate()
        child.wait()


def push(lab, registry_ip):
    """Pushes a one-layer image with a push token minted here (not through /token)."""
    ctx = ssl.create_default_context(cafile=os.path.join(lab.root, "ca.pem"))
    ctx.check_hostname = False
    auth = f"Bearer {lab.token(USER, ['pull', 'push'])}"
    base = f"https://{registry_ip}"

    def call(method, path, body=b"", headers=None):
        req = urllib.request.Request(base + path, data=body if method != "GET" else None,
                                     method=method, headers={"authorization": auth, **(headers or {})})
        req.add_header("host", REGISTRY)
        return urllib.request.urlopen(req, context=ctx)

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        location = call("POST", f"/v2/{REPO}/blobs/uploads/").headers["location"]
        location = urllib.parse.urlparse(location)
        sep = "&" if location.query else "?"
        call("PUT", f"{location.path}?{location.query}{sep}digest={urllib.parse.quote(digest)}", data,
             {"content-type": "application/octet-stream"})
        return digest, len(data)

    layer = blob(b"edgeprobe bench layer")
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [layer[0]]}}).encode()
    cfg = blob(config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cfg[0], "size": cfg[1]},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer[0], "size": layer[1]}],
    }).encode()
    call("PUT", f"/v2/{REPO}/manifests/{TAG}", manifest,
         {"content-type": "application/vnd.docker.distribution.manifest.v2+json"})


if __name__ == "__main__":
    main()
