"""Debian's redis-server on a free port, for the distributed indexing tests and benchmark: plain, or with a
password and TLS only (a throwaway CA and server certificate made with the openssl command)."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from bot_support import free_port


def make_certificates(folder: Path, host: str = "127.0.0.1") -> dict[str, Path]:
    """A CA and a server certificate it signed for `host` (an IP address), and a second CA that signed
    nothing: {"ca", "other_ca", "cert", "key"}."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    for name in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=findimage test {name}",
                "-keyout", f"{name}.key", "-out", f"{name}.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}", "-keyout", "server.key",
            "-out", "server.csr")
    (folder / "san.ext").write_text(f"subjectAltName=IP:{host}\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "san.ext", "-out", "server.crt")
    return {"ca": folder / "ca.crt", "other_ca": folder / "other-ca.crt", "cert": folder / "server.crt",
            "key": folder / "server.key"}


class NoTLS(Exception):
    """This redis-server was built without TLS."""


class Redis:
    """Without persistence: a restart empties the queue. With `password`, clients must give it; with
    `certificates` (make_certificates), only TLS is served and `url` is rediss://."""

    def __init__(self, folder: Path, password: str | None = None, certificates: dict[str, Path] | None = None):
        self.port, self.folder, self.process = free_port(), folder, None
        self.password, self.certificates = password, certificates
        userinfo = f":{quote(password, safe='')}@" if password else ""
        self.url = f"{'rediss' if certificates else 'redis'}://{userinfo}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        cli = ["redis-cli", "-p", str(self.port)]
        if self.certificates:
            tls = self.certificates
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(tls["cert"]),
                     "--tls-key-file", str(tls["key"]), "--tls-ca-cert-file", str(tls["ca"]),
                     "--tls-auth-clients", "no"]
            cli += ["--tls", "--cacert", str(tls["ca"])]
        else:
            argv += ["--port", str(self.port)]
        if self.password:
            argv += ["--requirepass", self.password]
        log = self.folder / f"redis-{self.port}.log"
        with log.open("w") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        env = {"PATH": "/usr/bin:/bin", **({"REDISCLI_AUTH": self.password} if self.password else {})}
        while subprocess.run([*cli, "ping"], capture_output=True, text=True, env=env).stdout.strip() != "PONG":
            if self.process.poll() is not None and self.certificates and "tls" in log.read_text().lower():
                raise NoTLS(log.read_text())
            assert time.monotonic() < deadline and self.process.poll() is None, "redis-server did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None
