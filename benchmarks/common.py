"""What every benchmark shares: paths, the local sinks, subprocess timing, rows of results.

Nothing here imports stampcli, so the set-up and the references work even when
stamp's own modules are still missing or broken.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
LISTS = WORK / "lists"
LOGS = WORK / "logs"
RESULTS = BENCH / "results"
FIXTURES = BENCH / "fixtures"
PY = Path(sys.executable)
VENV_BIN = PY.parent
STAMP = VENV_BIN / "stamp"
MAILMERGE_VENV = WORK / "mailmerge-venv"
SMTP_SINK = "/usr/sbin/smtp-sink"
NGINX = "/usr/sbin/nginx"


class NotMeasured(Exception):
    """A figure that could not be taken; the message says why (it goes in the table)."""


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    """One line of the results table: a figure, its reference in the same run, the ratio."""

    measurement: str  # "4. send smtp"
    figure: str  # "stamp send, 100k recipients"
    unit: str  # "msg/s", "s", "ms/msg", "MB"
    value: float | None = None  # median
    runs: list[float] = field(default_factory=list)
    reference: str = ""  # "mailmerge 2.3.0"
    ref_value: float | None = None
    ref_runs: list[float] = field(default_factory=list)
    ratio: float | None = None
    ratio_label: str = ""  # "x faster", "x the reference", ...
    target: str = ""  # "<= 1 s; ..."
    passed: bool | None = None  # None: no target or not measured
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def not_measured(measurement: str, figure: str, unit: str, reason: str, target: str = "") -> Row:
    return Row(measurement, figure, unit, target=target, note=f"not measured: {reason}")


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def check(value: float | None, op: str, bound: float) -> bool | None:
    if value is None:
        return None
    return value <= bound if op == "<=" else value >= bound


def all_pass(*checks: bool | None) -> bool | None:
    if any(c is False for c in checks):
        return False
    if any(c is None for c in checks):
        return None
    return True


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise NotMeasured(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f}s")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Proc:
    """How a finished child went: exit code, wall time, peak memory.

    ``max_rss_mb`` is the child's own peak (its ``VmHWM``, sampled);
    ``tree_rss_mb`` the peak of the summed RSS of the child and every process
    it started (stamp renders in spawned worker processes for big sends),
    sampled every 0.1 s.
    """

    returncode: int
    seconds: float
    max_rss_mb: float
    stdout: Path
    stderr: Path
    timed_out: bool = False
    tree_rss_mb: float = 0.0
    tree_max_procs: int = 1

    def tail(self, n: int = 800) -> str:
        text = ""
        for p in (self.stderr, self.stdout):
            with contextlib.suppress(OSError):
                text += p.read_text(errors="replace")[-n:]
        return text.strip()


_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 1024 / 1024


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    kids = Path(f"/proc/{p}/task/{task}/children").read_text().split()
                    todo += [int(k) for k in kids]
    return out


def tree_rss(pid: int) -> tuple[float, int]:
    """Summed RSS (MB) of pid and its descendants, and how many processes that is."""
    total = 0.0
    procs = _descendants(pid)
    for p in procs:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * _PAGE_MB
    return total, len(procs)


def _hwm_mb(pid: int) -> float:
    """VmHWM (peak RSS) of one process in MB, 0 if it is gone."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


_run_counter = 0


def _kill_group(pid: int) -> None:
    """SIGKILL the child's whole process group (it was started in a new session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, 9)


def run_timed(
    argv: Sequence[str | os.PathLike[str]],
    *,
    label: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 3600.0,
) -> Proc:
    """Run a child, return its wall time and peak RSS (os.wait4 on that very process)."""
    global _run_counter
    _run_counter += 1
    LOGS.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)
    out = LOGS / f"{_run_counter:03d}-{safe}.out"
    err = LOGS / f"{_run_counter:03d}-{safe}.err"
    full_env = dict(os.environ)
    full_env.update(env or {})
    with out.open("wb") as fo, err.open("wb") as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(
            [str(a) for a in argv],
            cwd=cwd,
            env=full_env,
            stdout=fo,
            stderr=fe,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own group: killable whole
        )
        deadline = t0 + timeout
        timed_out = False
        tree_peak, tree_procs, next_sample = 0.0, 1, 0.0
        own_hwm = 0.0
        try:
            while True:
                now = time.perf_counter()
                if now >= next_sample:
                    mb, nprocs = tree_rss(p.pid)
                    if mb > tree_peak:
                        tree_peak = mb
                    tree_procs = max(tree_procs, nprocs)
                    own_hwm = max(own_hwm, _hwm_mb(p.pid))
                    next_sample = now + 0.1
                pid, status, usage = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    timed_out = True
                    _kill_group(p.pid)
                    pid, status, usage = os.wait4(p.pid, 0)
                    break
                time.sleep(0.01)
        except BaseException:
            _kill_group(p.pid)
            with contextlib.suppress(ChildProcessError):
                os.wait4(p.pid, 0)
            raise
        seconds = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    # The child's own peak is its VmHWM as last sampled: ru_maxrss (kilobytes on Linux)
    # also counts this process's peak when the child was started (vfork, then exec).
    own = own_hwm or usage.ru_maxrss / 1024.0
    return Proc(p.returncode, seconds, own, out, err, timed_out, max(tree_peak, own), tree_procs)


def machine() -> dict[str, str]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    load = ""
    with contextlib.suppress(OSError):
        load = " ".join(os.getloadavg().__repr__().strip("()").split(", ")[:3])
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": cpu,
        "memory": mem,
        "python": platform.python_version(),
        "os": platform.platform(),
        "load_at_start": load,
    }


# --------------------------------------------------------------------------- set-up


def _apt_install(packages: list[str]) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if "postfix" in packages:
        subprocess.run(
            ["debconf-set-selections"],
            input=b"postfix postfix/main_mailer_type select No configuration\n",
            check=False,
        )
    log(f"apt-get install {' '.join(packages)}")
    subprocess.run(["apt-get", "update", "-q"], env=env, check=False, capture_output=True)
    r = subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        raise NotMeasured(f"apt-get install {' '.join(packages)} failed: {r.stderr[-300:]}")


def _stop_system_daemons() -> None:
    """Installing postfix or nginx may start their daemons: this suite never uses them."""
    if shutil.which("postfix"):
        subprocess.run(["postfix", "stop"], capture_output=True, check=False)
    pid_file = Path("/run/nginx.pid")
    if pid_file.exists():
        subprocess.run([NGINX, "-s", "stop"], capture_output=True, check=False)


def ensure_system() -> None:
    missing = []
    if not Path(SMTP_SINK).exists():
        missing.append("postfix")
    if not Path(NGINX).exists():
        missing.append("nginx-light")
    if missing:
        if os.geteuid() != 0:
            raise NotMeasured(f"{', '.join(missing)} missing and not root to apt-get it")
        _apt_install(missing)
        _stop_system_daemons()


def ensure_pip(module: str, requirement: str) -> None:
    """Benchmark-only dependencies (premailer, ...) go into the running venv."""
    try:
        __import__(module)
    except ImportError:
        log(f"pip install {requirement} (benchmark-only dependency)")
        subprocess.run(
            [str(PY), "-m", "pip", "install", "-q", requirement], check=True, capture_output=True
        )


def ensure_mailmerge() -> Path:
    exe = MAILMERGE_VENV / "bin" / "mailmerge"
    if not exe.exists():
        log("creating the mailmerge virtualenv (pip install mailmerge)")
        subprocess.run([str(PY), "-m", "venv", str(MAILMERGE_VENV)], check=True)
        subprocess.run(
            [str(MAILMERGE_VENV / "bin" / "pip"), "install", "-q", "mailmerge>=2,<3"],
            check=True,
            capture_output=True,
        )
    return exe


def mailmerge_version() -> str:
    r = subprocess.run(
        [str(MAILMERGE_VENV / "bin" / "mailmerge"), "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    return r.stdout.strip().replace(", version", "") or "mailmerge"


# --------------------------------------------------------------------------- sinks


class SmtpSink:
    """Postfix's smtp-sink on 127.0.0.1 with a running message counter (-c)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        LOGS.mkdir(parents=True, exist_ok=True)
        self.counter_file = LOGS / f"smtp-sink-{self.port}.out"

    def start(self) -> SmtpSink:
        argv = [SMTP_SINK, "-c", "-m", "1000", f"127.0.0.1:{self.port}", "1000"]
        if os.geteuid() == 0:
            argv[1:1] = ["-u", "nobody"]
        self.fh = self.counter_file.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self.fh, stderr=subprocess.STDOUT)
        wait_port(self.port)
        return self

    def messages(self) -> int:
        """Messages received so far (the last ``mesg=N`` of smtp-sink's counter)."""
        time.sleep(0.2)
        with self.counter_file.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 200))
            tail = f.read().decode(errors="replace")
        found = re.findall(r"mesg=(\d+)", tail)
        return int(found[-1]) if found else 0

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(Exception):
            self.fh.close()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _nginx_conf(port: int, prefix: Path) -> str:
    return f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
http {{
    access_log off;
    client_body_buffer_size 4m;
    client_max_body_size 64m;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path {prefix}/body;
    default_type application/json;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        # SendGrid v3 mail/send: 202, empty body, X-Message-Id header
        location = /v3/mail/send {{
            add_header X-Message-Id "bench-sg-1" always;
            return 202;
        }}
        location / {{ return 200 '{{}}'; }}
    }}
}}
"""


class HttpSink:
    """Local provider APIs on 127.0.0.1.

    ``base``: nginx answering SendGrid's ``/v3/mail/send`` with a fixed 202.
    ``batch_base``: benchmarks/batch_server.py answering Postmark's and
    Resend's batch calls with exactly one result per message (nginx cannot
    count the entries).
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.batch_port = free_port()
        self.prefix = WORK / f"nginx-{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.batch_proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def batch_base(self) -> str:
        return f"http://127.0.0.1:{self.batch_port}"

    def start(self) -> HttpSink:
        self.prefix.mkdir(parents=True, exist_ok=True)
        (self.prefix / "body").mkdir(exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(_nginx_conf(self.port, self.prefix))
        self.proc = subprocess.Popen(
            [NGINX, "-c", str(conf), "-p", str(self.prefix), "-e", str(self.prefix / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.batch_proc = subprocess.Popen(
            [str(PY), str(BENCH / "batch_server.py"), str(self.batch_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)
        wait_port(self.batch_port)
        return self

    def stop(self) -> None:
        for proc in (self.proc, self.batch_proc):
            if proc and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> HttpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def chdir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# --------------------------------------------------------------------------- run context


@dataclass
class Ctx:
    """What one run of the suite shares between measurements."""

    quick: bool = False
    repeat: int = 3
    shared: dict[str, Any] = field(default_factory=dict)
    _smtp: SmtpSink | None = None
    _http: HttpSink | None = None

    @property
    def n(self) -> int:
        """The "100k" size (10k with --quick)."""
        return 10_000 if self.quick else 100_000

    @property
    def big(self) -> int | None:
        """The "1M" size (None with --quick: skipped)."""
        return None if self.quick else 1_000_000

    @property
    def repeat_big(self) -> int:
        return 1

    def smtp(self) -> SmtpSink:
        if self._smtp is None:
            self._smtp = SmtpSink().start()
        return self._smtp

    def http(self) -> HttpSink:
        if self._http is None:
            self._http = HttpSink().start()
        return self._http

    def close(self) -> None:
        for sink in (self._smtp, self._http):
            if sink is not None:
                sink.stop()


def fmt_n(n: int) -> str:
    return (
        f"{n // 1_000_000}M"
        if n >= 1_000_000 and n % 1_000_000 == 0
        else (f"{n // 1000}k" if n % 1000 == 0 else str(n))
    )
