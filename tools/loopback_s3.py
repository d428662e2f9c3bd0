"""An S3 server and a proxy on loopback, for the tests and the benchmark: moto in server mode,
and a forwarding proxy that counts requests and can answer some PUTs 503 (S3's SlowDown) or drop
their connection without an answer.

    from loopback_s3 import S3, Proxy
"""

from __future__ import annotations

import http.client
import http.server
import logging
import os
import random
import subprocess
import sys
import threading
import uuid
from collections import Counter
from pathlib import Path

STREAMCONV = str(Path(sys.executable).with_name("streamconv"))


class S3:
    """A moto S3 server on 127.0.0.1 and the environment that points clients at it."""

    def __init__(self) -> None:
        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint}
        self.client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                                   aws_secret_access_key="testing", region_name="us-east-1")

    def bucket(self) -> str:
        name = f"b-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str, prefix: str) -> dict[str, bytes]:
        """Every object below `prefix` but the run's state, as `files` lists a directory."""
        out = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
            for item in page.get("Contents", []):
                key = item["Key"][len(prefix) + 1:]
                if not key.startswith(".streamconv/"):
                    out[key] = self.client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return dict(sorted(out.items()))

    def run(self, *args: str, endpoint: str | None = None, retries: int | None = None) -> subprocess.CompletedProcess:
        """streamconv with this server's environment (`endpoint`: another way to it, e.g. a
        proxy; `retries`: STREAMCONV_RETRIES)."""
        env = {**os.environ, **self.env, "AWS_ENDPOINT_URL": endpoint or self.endpoint}
        if retries is not None:
            env["STREAMCONV_RETRIES"] = str(retries)
        return subprocess.run([STREAMCONV, *args], capture_output=True, text=True, env=env, timeout=300)


class Proxy(http.server.ThreadingHTTPServer):
    """Forwards requests to a server and counts them by method; answers a fraction `rate` of
    the PUTs 503 (S3's SlowDown) or drops their connection without an answer. A context
    manager: serves in a thread from `with` to its end."""

    def __init__(self, upstream: str, rate: float = 0.0, seed: int = 0, after: int = 0,
                 kinds: tuple[str, ...] = ("503", "dropped")) -> None:
        """`after`: PUTs answered before the faults begin; `kinds`: the faults drawn from."""
        self.upstream = upstream.removeprefix("http://")
        self.rate, self.random, self.after, self.kinds = rate, random.Random(seed), after, kinds
        self.faults: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.guard = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> Proxy:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def fault(self, method: str) -> str | None:
        with self.guard:
            self.requests[method] += 1
            if method != "PUT" or self.requests["PUT"] <= self.after or self.random.random() >= self.rate:
                return None
            kind = self.random.choice(self.kinds)
            self.faults[kind] += 1
            return kind


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Proxy

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = self.server.fault(self.command)
        if fault == "dropped":
            self.close_connection = True
            self.connection.close()
            return
        if fault == "503":
            reply = b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            return
        conn = http.client.HTTPConnection(self.server.upstream, timeout=60)
        try:
            conn.request(self.command, self.path, body=body, headers=dict(self.headers))
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


