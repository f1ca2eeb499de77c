"""A registry that misbehaves on purpose, for test_registry_hostile.py: what a broken or hostile
server can answer to skopeo, one behaviour per repository name.

    python3 hostile_registry.py ADDRESS PORT DATA

DATA holds blobs/sha256/HEX (manifests, configs, layers, written by the test), tags.json
({"repo:tag": "sha256:..."}) and modes.json ({"repo": MODE}).  Each request is logged to
DATA/requests.log (method, path, bytes sent).  Modes:

    normal         serve what DATA holds
    huge-manifest  a 64 MiB manifest
    silent         accept the connection and never answer a manifest request
    redirect-loop  a manifest request redirected to itself, forever
    long-blob      a layer blob that goes on past its declared size, without end
    tampered-blob  a layer blob of the right size with one byte changed
    swapped        a manifest asked for by digest answered with the tag's (another) manifest
    trickle        a layer blob sent one byte every half second
"""

import json
import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

ADDRESS, PORT, DATA = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def load(name: str) -> dict:
    try:
        return json.loads((DATA / name).read_text())
    except (OSError, ValueError):
        return {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def note(self, sent: int):
        with open(DATA / "requests.log", "a") as f:
            f.write(f"{self.command} {self.path} {sent}\n")

    def send(self, code: int, body: bytes = b"", ctype: str = "application/json", **headers):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.note(len(body))

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?")[0]
        if path in ("/v2", "/v2/"):
            return self.send(200, b"{}")
        parts = path.split("/")
        if len(parts) < 5 or parts[1] != "v2":
            return self.send(404, b'{"errors":[{"code":"NOT_FOUND"}]}')
        repo, kind, ref = "/".join(parts[2:-2]), parts[-2], parts[-1]
        mode = load("modes.json").get(repo, "normal")
        if kind == "manifests":
            return self.manifest(repo, ref, mode)
        if kind == "blobs":
            return self.blob(ref, mode)
        return self.send(404, b'{"errors":[{"code":"NOT_FOUND"}]}')

    def manifest(self, repo: str, ref: str, mode: str):
        if mode == "silent":
            self.note(0)
            time.sleep(3600)
            return
        if mode == "redirect-loop":
            return self.send(302, b"", Location=self.path)
        if mode == "huge-manifest":
            self.send_response(200)
            self.send_header("Content-Type", MANIFEST)
            self.send_header("Content-Length", str(64 << 20))
            self.end_headers()
            sent = 0
            try:
                self.wfile.write(b'{"schemaVersion": 2, "x": "')
                while sent < (64 << 20) - 64:
                    self.wfile.write(b"x" * 65536)
                    sent += 65536
            except OSError:
                pass
            self.note(sent)
            return
        tags = load("tags.json")
        digest = ref if ref.startswith("sha256:") else tags.get(f"{repo}:{ref}")
        if mode == "swapped" and ref.startswith("sha256:"):  # another image of the repository
            digest = next(d for k, d in tags.items() if k.startswith(f"{repo}:") and d != ref)
        if digest is None:
            return self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
        body = (DATA / "blobs/sha256" / digest.split(":")[1]).read_bytes()
        ctype = json.loads(body).get("mediaType", MANIFEST)
        self.send(200, body, ctype, Docker_Content_Digest=digest)

    def blob(self, digest: str, mode: str):
        path = DATA / "blobs/sha256" / digest.split(":")[-1]
        if not path.is_file():
            return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
        body = path.read_bytes()
        is_layer = not body.startswith(b"{")
        if is_layer and mode == "tampered-blob":
            body = bytes([body[0] ^ 1]) + body[1:]
        if is_layer and mode in ("long-blob", "trickle"):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            sent = 0
            try:
                if mode == "trickle":
                    for byte in body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        sent += 1
                        time.sleep(0.5)
                else:
                    self.wfile.write(body)
                    sent = len(body)
                    while True:
                        self.wfile.write(b"\0" * 65536)
                        sent += 65536
            except OSError:
                pass
            self.note(sent)
            self.close_connection = True
            return
        self.send(200, body, "application/octet-stream", Docker_Content_Digest=digest)


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    with Server((ADDRESS, PORT), Handler) as server:
        server.serve_forever()
