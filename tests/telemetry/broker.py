"""A real Mosquitto for tests and the benchmark: own config, free loopback port, own files.

Readiness and persistence saves are detected from the broker's own log lines (read by a
thread from its stderr), so nothing here sleeps for a fixed time.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto")
MOSQUITTO_SUB = shutil.which("mosquitto_sub")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
OPENSSL = shutil.which("openssl")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class AuthFiles:
    password_file: Path
    acl_file: Path


class Mosquitto:
    """One broker process; `start()` can be called again after `kill()` (same port, same db)."""

    def __init__(self, workdir: Path, *, port: int | None = None, tls: TlsFiles | None = None,
                 auth: AuthFiles | None = None, persistence: bool = False,
                 extra_conf: str = "", raw_conf: str | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        # A port picked here may be taken by another process (a parallel test worker) before
        # the broker binds it; the first start then picks another. A restart keeps its port.
        self._may_move = port is None
        self.tls = tls
        self.auth = auth
        self.persistence = persistence
        self.extra_conf = extra_conf
        self.raw_conf = raw_conf  # a complete configuration instead of the generated one
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: list[str] = []
        self._cond = threading.Condition()
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.workdir / "mosquitto.db"

    def config_text(self) -> str:
        if self.raw_conf is not None:
            return self.raw_conf
        lines = [f"user {getpass.getuser()}",  # as root, do not drop to the mosquitto user
                 f"listener {self.port} 127.0.0.1",
                 "log_dest stderr",
                 "log_type error", "log_type warning", "log_type notice", "log_type information",
                 "log_type subscribe",
                 "max_queued_messages 100000"]
        if self.tls:
            lines += [f"cafile {self.tls.ca}", f"certfile {self.tls.cert}",
                      f"keyfile {self.tls.key}"]
        if self.auth:
            lines += ["allow_anonymous false", f"password_file {self.auth.password_file}",
                      f"acl_file {self.auth.acl_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/",
                      "autosave_interval 3600"]
        return "\n".join(lines) + "\n" + self.extra_conf

    def start(self, timeout_s: float = 10.0) -> Mosquitto:
        for _ in range(3):
            try:
                return self._start(timeout_s)
            except RuntimeError:
                if not (self._may_move and any("in use" in line for line in self.log)):
                    raise
                self.port = free_port()
        raise RuntimeError("mosquitto found no free port:\n" + "\n".join(self.log))

    def _start(self, timeout_s: float) -> Mosquitto:
        assert MOSQUITTO, "mosquitto is not installed"
        self._may_move, first = False, self._may_move
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config_text())
        with self._cond:
            self.log.clear()
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        threading.Thread(target=self._read_log, args=(self.proc,), daemon=True).start()
        if not self.wait_for_log(" running", timeout_s):
            self.kill()
            self._may_move = first
            raise RuntimeError("mosquitto did not start:\n" + "\n".join(self.log))
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s):
            pass  # the listener accepts
        return self

    def _read_log(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            with self._cond:
                self.log.append(raw.decode(errors="replace").rstrip())
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_log(self, text: str, timeout_s: float = 10.0, *, count: int = 1) -> bool:
        """Block until `text` has appeared in `count` log lines (False on timeout or exit)."""
        proc = self.proc

        def seen() -> bool:
            hits = sum(text in line for line in self.log)
            return hits >= count or (proc is not None and proc.poll() is not None)

        with self._cond:
            self._cond.wait_for(seen, timeout_s)
            return sum(text in line for line in self.log) >= count

    def save_db(self, timeout_s: float = 10.0) -> None:
        """Have the broker write its persistence db now (SIGUSR1), and wait until it has."""
        assert self.proc is not None and self.persistence
        before = sum("Saving in-memory database" in line for line in self.log)
        mtime = self.db_path.stat().st_mtime_ns if self.db_path.exists() else 0
        self.proc.send_signal(signal.SIGUSR1)
        assert self.wait_for_log("Saving in-memory database", timeout_s, count=before + 1)
        # The log line comes first; the file is renamed into place once complete.
        tick = threading.Event()  # never set: a bounded wait between checks of the file
        for _ in range(int(timeout_s * 200)):
            if self.db_path.exists() and self.db_path.stat().st_mtime_ns != mtime:
                return
            tick.wait(0.005)
        raise AssertionError("mosquitto did not write its persistence db")

    def kill(self) -> None:
        """SIGKILL: no goodbye, no final save, as in a crash or a pulled plug."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def make_test_ca(directory: Path) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost, made with openssl."""
    assert OPENSSL, "openssl is not installed"
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([OPENSSL, *args], cwd=directory, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=pumpctl test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (directory / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext")
    for name in ("ca.key", "server.key"):
        os.chmod(directory / name, 0o600)
    return TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")


def make_auth(directory: Path, users: dict[str, str], acl: str) -> AuthFiles:
    """A mosquitto password file (hashed by mosquitto_passwd) and an ACL file."""
    assert MOSQUITTO_PASSWD, "mosquitto_passwd is not installed"
    directory.mkdir(parents=True, exist_ok=True)
    password_file = directory / "passwd"
    password_file.write_text("")
    for user, password in users.items():
        subprocess.run([MOSQUITTO_PASSWD, "-b", str(password_file), user, password],
                       check=True, capture_output=True)
    acl_file = directory / "acl"
    acl_file.write_text(acl)
    for path in (password_file, acl_file):
        os.chmod(path, 0o600)
    return AuthFiles(password_file, acl_file)


def start_mosquitto_sub(broker: Mosquitto, topic: str, *, count: int, client_id: str,
                        extra_args: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    """An independent `mosquitto_sub` that exits after `count` messages; returns once the
    broker has logged its subscription, so nothing published afterwards can be missed."""
    assert MOSQUITTO_SUB, "mosquitto_sub is not installed"
    proc = subprocess.Popen(
        [MOSQUITTO_SUB, "-h", "127.0.0.1", "-p", str(broker.port), "-t", topic, "-q", "1",
         "-C", str(count), "-i", client_id, "-F", "%r %q %t %p", *extra_args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not broker.wait_for_log(f"{client_id} 1 {topic}"):
        proc.kill()
        raise RuntimeError(f"mosquitto_sub did not subscribe: {proc.communicate()[1]}")
    return proc


def parse_sub_output(text: str) -> list[tuple[bool, int, str, str]]:
    """(retained, qos, topic, payload) per line of `-F '%r %q %t %p'` output."""
    rows = []
    for line in text.splitlines():
        retained, qos, topic, payload = line.split(" ", 3)
        rows.append((retained == "1", int(qos), topic, payload))
    return rows


class SubscriberProcess:
    """`mosquitto_sub` running alongside a test: its output lines, collected by a thread."""

    def __init__(self, broker: Mosquitto, topic: str, client_id: str) -> None:
        assert MOSQUITTO_SUB, "mosquitto_sub is not installed"
        self.proc = subprocess.Popen(
            [MOSQUITTO_SUB, "-h", "127.0.0.1", "-p", str(broker.port), "-t", topic, "-q", "1",
             "-i", client_id, "-F", "%r %q %t %p"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        if not broker.wait_for_log(f"{client_id} 1 {topic}"):
            self.proc.kill()
            raise RuntimeError(f"mosquitto_sub did not subscribe: {self.proc.communicate()[1]}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for_line(self, text: str, timeout_s: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: any(text in line for line in self.lines),
                                       timeout_s)

    def rows(self) -> list[tuple[bool, int, str, str]]:
        with self._cond:
            return parse_sub_output("\n".join(self.lines))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
