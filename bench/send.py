"""Send one mailing to N subscribers through SMTP into a local sink, end to end.

    .venv/bin/python bench/send.py [--backend sqlite|postgresql] [--subscribers 100000]
        [--workers 2] [--sink smtp-sink|aiosmtpd] [--raw-sessions 4] [--raw-length 4096]
        [--set NAME=VALUE ...] [--log FILE]

Starts a sink (Postfix's smtp-sink by default, or aiosmtpd in a subprocess) and a real
`dripstone serve` whose DRIPSTONE_SMTP_URL points at it, loads N subscribers into a new list
(not timed), creates a mailing with merge tags, three tracked links and a style sheet, then
times POST /campaign_mailing_sends until the sink has accepted every message and the send's
job has succeeded. `--set QUEUE_WORKERS=4` (repeatable) passes DRIPSTONE_* settings through.

Prints progress while sending, then a table: messages/s end to end and in steady state, wall
time, server CPU seconds per message (all processes of the `dripstone serve` tree; with
PostgreSQL the database's own processes are not included), peak RSS of the server processes
(summed and per process), and the raw ceiling of the same sink fed by Postfix's smtp-source
with messages of about the same size, with the ratio dripstone/raw. Figures, not pass/fail;
exits 1 only if the send's job fails or times out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness import Server, machine, running_server

API = "/v1/marketing"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POLL_SECONDS = 0.2
SAMPLE_SECONDS = 0.1
FROM_EMAIL = "news@example.com"

SUBJECT = '{{ first_name | default("there") }}, what is new on your {{ custom.plan }} plan'
HTML = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>Dripstone news</title>
<style>
  body { font-family: Helvetica, Arial, sans-serif; color: #333333; background: #f4f4f4; }
  .wrapper { max-width: 600px; margin: 0 auto; background: #ffffff; padding: 24px; }
  h1 { font-size: 22px; color: #114477; margin: 0 0 16px 0; }
  p { font-size: 15px; line-height: 1.5; margin: 0 0 12px 0; }
  .plan { font-weight: bold; color: #aa5500; }
  .button { display: inline-block; padding: 10px 18px; background: #114477; color: #ffffff;
            text-decoration: none; border-radius: 4px; }
  @media (max-width: 620px) { .wrapper { padding: 12px; } }
</style>
</head>
<body>
<div class="wrapper">
  <h1>Hello {{ first_name | default("there") }}!</h1>
  <p>Thank you for being with us on the <span class="plan">{{ custom.plan }}</span> plan.
  This month we made sending faster, reports clearer and the editor easier to use.</p>
  <p>Read what changed in the <a href="https://example.com/changelog?utm_source=newsletter">
  release notes</a>, or see how others use it in our
  <a href="https://example.com/stories/customers">customer stories</a>.</p>
  <p>Questions? Our <a href="https://help.example.com/">help centre</a> answers most of
  them, and the <a href="https://example.com/changelog?utm_source=newsletter">release
  notes</a> list every fix.</p>
  <p><a class="button" href="https://example.com/stories/customers">Read the stories</a></p>
</div>
</body>
</html>
"""


# --- SMTP sinks -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Sink:
    """A sink process printing `mesg=<count>` counters; a thread follows them."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    count: int = 0
    size_bytes: int = 0  # total received; only the aiosmtpd sink reports it
    # (monotonic time, count) each time the count changed, to find when it reached a value.
    history: list[tuple[float, int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def follow(self) -> None:
        """Read the counters until the process ends (runs in a daemon thread)."""
        assert self.process.stdout is not None
        counter = re.compile(rb"mesg=(\d+)(?: bytes=(\d+))?")
        tail = b""
        fd = self.process.stdout.fileno()
        while chunk := os.read(fd, 65536):
            now = time.monotonic()
            text = tail + chunk
            end = max(text.rfind(b"\r"), text.rfind(b"\n"))
            if end < 0:
                tail = text
                continue
            text, tail = text[:end], text[end + 1 :]
            found = counter.findall(text)
            if found:
                count, size = found[-1]
                with self._lock:
                    self.count = int(count)
                    self.size_bytes = int(size or 0)
                    self.history.append((now, self.count))

    def reached(self, count: int) -> float | None:
        """When the count first reached `count` (monotonic), or None."""
        with self._lock:
            for when, seen in self.history:
                if seen >= count:
                    return when
        return None


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the SMTP sink exited during start-up ({process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the SMTP sink did not start listening within 15 s")


@contextmanager
def running_sink(kind: str) -> Iterator[Sink]:
    """smtp-sink (counts only, writes nothing) or an aiosmtpd sink, on a free local port."""
    port = free_port()
    if kind == "smtp-sink":
        if not Path(SMTP_SINK).exists():
            raise SystemExit(
                "smtp-sink not found: apt-get install postfix (or use --sink aiosmtpd)"
            )
        # -c: counters on stdout; -m: up to 1000 sessions at once; backlog 1000.
        command = [SMTP_SINK, "-c", "-m", "1000"]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # it refuses to run as root without dropping privileges
        command += [f"127.0.0.1:{port}", "1000"]
    else:
        command = [sys.executable, __file__, "--aiosmtpd-child", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    sink = Sink(name=kind, port=port, process=process)
    try:
        _wait_listening(port, process)
        threading.Thread(target=sink.follow, name="sink-counter", daemon=True).start()
        yield sink
    finally:
        process.terminate()
        process.wait(timeout=10)


def aiosmtpd_child(port: int) -> None:
    """The --sink aiosmtpd process: accept everything, print `mesg=N bytes=B` per message."""
    from aiosmtpd.smtp import SMTP, Envelope, Session

    class Counter:
        def __init__(self) -> None:
            self.messages = 0
            self.bytes = 0

        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
            self.messages += 1
            self.bytes += len(envelope.original_content or b"")
            sys.stdout.write(f"mesg={self.messages} bytes={self.bytes}\r")
            sys.stdout.flush()
            return "250 2.0.0 Ok: queued"

    async def serve() -> None:
        handler = Counter()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="aiosmtpd-sink", ident="aiosmtpd-sink"),
            "127.0.0.1",
            port,
            backlog=1000,
        )
        await server.serve_forever()

    asyncio.run(serve())


# --- the server's processes: CPU and memory -------------------------------------------------


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants that are alive."""
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and of its children it has waited for."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    # After "pid (comm)": state is fields[0]; utime, stime, cutime, cstime are 14-17 of stat.
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def status_kb(pid: int, name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def tree_cpu(root: int) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in process_tree(root)}


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / CLOCK_TICKS, sum(fields) / CLOCK_TICKS


def role(server: Server, pid: int) -> str:
    if pid == server.root_pid:
        return "serve (supervisor)"
    if pid in server.pids:
        return "server worker"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return "gone"
    return "resource tracker" if "resource_tracker" in command else command[:40]


class MemorySampler(threading.Thread):
    """Samples VmRSS of every process of the server tree; keeps the peaks."""

    def __init__(self, root: int) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.root = root
        self.peak_total_kb = 0
        self.peak_kb: dict[int, int] = {}
        self.last_total_kb = 0
        self._stopped = threading.Event()

    def sample(self) -> None:
        sizes = {pid: status_kb(pid, "VmRSS") for pid in process_tree(self.root)}
        self.last_total_kb = sum(sizes.values())
        self.peak_total_kb = max(self.peak_total_kb, self.last_total_kb)
        for pid, size in sizes.items():
            self.peak_kb[pid] = max(self.peak_kb.get(pid, 0), size)

    def run(self) -> None:
        while not self._stopped.wait(SAMPLE_SECONDS):
            self.sample()

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=5)
        self.sample()


# --- the API calls --------------------------------------------------------------------------


def data(response: httpx.Response) -> Any:
    if response.status_code != 200 or "data" not in response.json():
        raise RuntimeError(f"{response.request.url.path}: {response.status_code} {response.text}")
    return response.json()["data"]


def subscribers(start: int, size: int) -> list[dict[str, object]]:
    plans = ("gold", "silver", "bronze")
    return [
        {
            "email": f"person{n}@example.com",
            # One in ten has no first name, so `default("there")` is used too.
            **({"first_name": f"First{n}"} if n % 10 else {}),
            "last_name": f"Last{n}",
            "custom_fields": [{"plan": plans[n % 3]}],
        }
        for n in range(start, start + size)
    ]


def load(client: httpx.Client, list_id: str, total: int, batch: int = 1000) -> None:
    """Create `total` subscribers in the list `list_id`, four requests at a time."""

    def post(start: int) -> int:
        body = {
            "subscribers": subscribers(start, min(batch, total - start)),
            "subscription_list_id": list_id,
        }
        response = client.post(f"{API}/subscribers_bulk_create", json=body)
        return int(data(response)["num_subscribers_added"])

    with ThreadPoolExecutor(4) as pool:
        added = sum(pool.map(post, range(0, total, batch)))
    if added != total:
        raise RuntimeError(f"expected {total} new subscribers, the server added {added}")


def create_mailing(client: httpx.Client) -> str:
    body = {
        "campaign_mailing": {
            "subject": SUBJECT,
            "from": FROM_EMAIL,
            "from_name": "Dripstone News",
            "html_part": HTML,
        }
    }
    return str(data(client.post(f"{API}/campaign_mailings", json=body))["id"])


# --- the run ---------------------------------------------------------------------------------


@dataclass
class SendFigures:
    messages: int
    first_seconds: float
    last_seconds: float
    job_seconds: float
    steady_rate: float
    cpu_seconds: float
    cpu_by_process: dict[str, float]
    peak_total_mb: float
    before_mb: dict[str, float]
    peak_mb: dict[str, float]
    hwm_mb: dict[str, float]
    counts: dict[str, int]
    mean_size: float | None
    machine_busy: float  # share of all cores busy during the send (any process)
    sink_cpu_seconds: float


def timed_send(
    server: Server,
    client: httpx.Client,
    sink: Sink,
    mailing_id: str,
    list_id: str,
    total: int,
    timeout: float,
) -> SendFigures:
    """POST the send, follow its job and the sink until both are done; figures of the run."""
    sampler = MemorySampler(server.root_pid)
    sampler.sample()
    before_kb = dict(sampler.peak_kb)  # after loading the list, before the send
    baseline, baseline_bytes = sink.count, sink.size_bytes
    cpu_before = tree_cpu(server.root_pid)
    sink_cpu_before = cpu_seconds(sink.process.pid)
    busy_before, total_before = machine_busy()
    sampler.start()
    started = time.monotonic()
    body = {
        "campaign_mailing_id": mailing_id,
        "campaign_mailing_send": {
            "sender_email": "bench@example.com",
            "subscription_list_id": list_id,
        },
    }
    started_send = data(client.post(f"{API}/campaign_mailing_sends", json=body))
    send_id, jid = started_send["campaign_mailing_send_id"], started_send["jid"]
    next_report = total / 10
    while True:
        job = data(client.get(f"{API}/jobs/{jid}"))["attributes"]
        elapsed = time.monotonic() - started
        sent = sink.count - baseline
        if sent >= next_report or job["state"] in ("succeeded", "failed", "cancelled"):
            while next_report <= sent:
                next_report += total / 10
            print(
                f"  {elapsed:7.1f} s  sink {sent:>9,}  {sent / elapsed:>7,.0f}/s"
                f"  job {job['state']} done {job['done']:,}/{job['total']:,}"
                f"  server RSS {sampler.last_total_kb / 1024:7.1f} MB"
            )
        if job["state"] == "succeeded":
            break
        if job["state"] in ("failed", "cancelled"):
            print(f"error: the send's job {jid} {job['state']}: {job['error']}")
            sys.exit(1)
        if elapsed > timeout:
            print(f"error: the send did not finish within {timeout:.0f} s ({job})")
            sys.exit(1)
        time.sleep(POLL_SECONDS)
    job_seconds = time.monotonic() - started
    cpu_after = tree_cpu(server.root_pid)
    busy_after, total_after = machine_busy()
    sink_cpu = cpu_seconds(sink.process.pid) - sink_cpu_before
    cpu = {pid: seconds - cpu_before.get(pid, 0.0) for pid, seconds in cpu_after.items()}
    sampler.stop()
    # The job succeeds once no delivery is pending; the sink may print its last counter late.
    deadline = time.monotonic() + 5
    while sink.reached(baseline + total) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    counts = data(client.get(f"{API}/campaign_mailing_sends/{send_id}"))["attributes"]["counts"]

    def at(count: int) -> float:
        when = sink.reached(baseline + count)
        return (when - started) if when is not None else float("nan")

    low, high = max(1, total // 10), max(1, total * 9 // 10)
    steady = (high - low) / (at(high) - at(low)) if high > low else float("nan")
    sent = sink.count - baseline
    return SendFigures(
        messages=sent,
        first_seconds=at(1),
        last_seconds=at(total) if sent >= total else job_seconds,
        job_seconds=job_seconds,
        steady_rate=steady,
        cpu_seconds=sum(cpu.values()),
        cpu_by_process={f"{pid} {role(server, pid)}": seconds for pid, seconds in cpu.items()},
        peak_total_mb=sampler.peak_total_kb / 1024,
        before_mb={f"{pid} {role(server, pid)}": kb / 1024 for pid, kb in before_kb.items()},
        peak_mb={f"{pid} {role(server, pid)}": kb / 1024 for pid, kb in sampler.peak_kb.items()},
        # The kernel's VmHWM can lag a sample by a few pages (per-thread RSS counters).
        hwm_mb={
            f"{pid} {role(server, pid)}": max(status_kb(pid, "VmHWM"), sampler.peak_kb.get(pid, 0))
            / 1024
            for pid in process_tree(server.root_pid)
        },
        counts=counts,
        mean_size=(sink.size_bytes - baseline_bytes) / sent if sink.size_bytes and sent else None,
        machine_busy=(busy_after - busy_before) / (total_after - total_before),
        sink_cpu_seconds=sink_cpu,
    )


def raw_ceiling(sink: Sink, messages: int, sessions: int, length: int) -> float:
    """smtp-source into `sink`: `messages` of `length` payload bytes over `sessions`
    connections, each reused for the next message (-d) as dripstone's pool does."""
    baseline = sink.count
    command = [
        SMTP_SOURCE,
        "-d",
        "-s",
        str(sessions),
        "-m",
        str(messages),
        "-l",
        str(length),
        "-f",
        FROM_EMAIL,
        "-t",
        "person@example.com",
        "-S",
        "raw ceiling",
        f"127.0.0.1:{sink.port}",
    ]
    started = time.monotonic()
    subprocess.run(command, check=True)
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 5
    while sink.count - baseline < messages and time.monotonic() < deadline:
        time.sleep(0.05)
    if sink.count - baseline != messages:
        print(f"  warning: the sink counted {sink.count - baseline:,} of {messages:,} messages")
    return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--sink", choices=["smtp-sink", "aiosmtpd"], default="smtp-sink")
    parser.add_argument("--raw-sessions", type=int, default=4, help="smtp-source -s")
    parser.add_argument("--raw-length", type=int, default=4096, help="smtp-source -l (bytes)")
    parser.add_argument(
        "--raw-messages", type=int, default=0, help="default: max(subscribers, 100000)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a DRIPSTONE_ setting for the server, e.g. QUEUE_WORKERS=4",
    )
    parser.add_argument("--log", type=Path, help="append the server's stderr (JSON logs) here")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after (seconds)")
    parser.add_argument("--aiosmtpd-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.aiosmtpd_child:
        aiosmtpd_child(args.aiosmtpd_child)
        return
    total = args.subscribers
    if any("=" not in item for item in args.set):
        parser.error("--set takes NAME=VALUE, e.g. --set QUEUE_WORKERS=4")
    settings = dict(item.split("=", 1) for item in args.set)
    print(
        f"send: {total:,} subscribers, {args.backend}, {args.workers} server processes, "
        f"sink {args.sink}{', ' + ', '.join(args.set) if args.set else ''}; {machine()}"
    )
    with running_sink(args.sink) as sink:
        env = {f"DRIPSTONE_{name.upper()}": value for name, value in settings.items()}
        env["DRIPSTONE_SMTP_URL"] = f"smtp://127.0.0.1:{sink.port}"
        with (
            running_server(args.backend, args.workers, env=env, log_file=args.log) as server,
            httpx.Client(base_url=server.base, headers=server.headers, timeout=300) as client,
        ):
            started = time.monotonic()
            list_id = data(client.post(f"{API}/subscription_lists", json={"name": "bench"}))["id"]
            load(client, list_id, total)
            mailing_id = create_mailing(client)
            print(f"  loaded {total:,} subscribers in {time.monotonic() - started:.1f} s")
            send = timed_send(server, client, sink, mailing_id, list_id, total, args.timeout)
        raw_messages = args.raw_messages or max(total, 100_000)
        raw = raw_ceiling(sink, raw_messages, args.raw_sessions, args.raw_length)
    rate = total / send.last_seconds
    rows = [
        ("messages accepted by the sink", f"{send.messages:,} of {total:,}"),
        ("send counts (delivered/pending/failed)", _counts(send.counts)),
        ("first message accepted after", f"{send.first_seconds:.2f} s"),
        ("last message accepted after (wall)", f"{send.last_seconds:.2f} s"),
        ("job succeeded after", f"{send.job_seconds:.2f} s"),
        ("end to end", f"{rate:,.0f} messages/s"),
        ("steady state (10% to 90%)", f"{send.steady_rate:,.0f} messages/s"),
        (
            "server CPU (user+sys, whole tree)",
            f"{send.cpu_seconds:.1f} s = {send.cpu_seconds / total * 1000:.2f} ms/message",
        ),
        ("sink CPU", f"{send.sink_cpu_seconds:.1f} s"),
        (
            f"machine CPU busy during the send ({os.cpu_count()} cores)",
            f"{send.machine_busy:.0%} (every process, not only dripstone)",
        ),
        ("server peak RSS, sum of processes", f"{send.peak_total_mb:.1f} MB"),
    ]
    rows += [
        (
            f"  pid {name}",
            f"CPU {send.cpu_by_process.get(name, 0):5.1f} s, RSS {send.before_mb.get(name, 0):.1f}"
            f" MB before the send, peak {mb:.1f} MB (lifetime peak"
            f" {send.hwm_mb.get(name, 0):.1f} MB)",
        )
        for name, mb in sorted(send.peak_mb.items())
    ]
    if send.mean_size is not None:
        rows.append(("mean message size at the sink", f"{send.mean_size:,.0f} bytes"))
    rows += [
        (
            f"raw: smtp-source -d -s {args.raw_sessions} -l {args.raw_length}",
            f"{raw:,.0f} messages/s ({raw_messages:,} messages)",
        ),
        ("dripstone / raw", f"{rate / raw:.1%}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"result ({machine()}):")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def _counts(counts: dict[str, int]) -> str:
    failed = counts["failed"] + counts["soft_bounced"] + counts["hard_bounced"]
    return f"{counts['delivered']:,}/{counts['pending']:,}/{failed:,}"


if __name__ == "__main__":
    main()
