"""Per-message cost of the delivery core: render, MIME, DKIM; figures, not pass/fail.

One realistic mailing (about 10 KB of HTML with a style sheet, 8 links, merge tags in the
subject, body and one link) is prepared once, then rendered and built for a list of distinct
recipients, as a send does. Each figure is the best of several rounds, so a busy machine
shows up as spread between best and median rather than as a slower best.

    .venv/bin/python bench/render.py             # the figures
    .venv/bin/python bench/render.py --profile   # plus cProfile of render + MIME
    .venv/bin/python bench/render.py --messages 5000 --rounds 7
    .venv/bin/python bench/render.py --no-smtp   # skip sending to a local aiosmtpd sink
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import os
import pstats
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dripstone.delivery.footer import with_unsubscribe_footer
from dripstone.delivery.mime import DkimKey, MessageFrame, build
from dripstone.delivery.prepare import PreparedMailing, RenderedMessage
from dripstone.delivery.signing import TrackingTokens
from dripstone.delivery.template import Recipient
from dripstone.delivery.transports import Status, TransportOptions, open_transport

SUBJECT = "{{ first_name | default('Friend') }}, your spring wellness update is here"
STYLE = """
  body { margin: 0; padding: 0; background: #f4f4f4; font-family: Arial, sans-serif; }
  .wrapper { width: 100%; background: #f4f4f4; }
  .container { max-width: 600px; margin: 0 auto; background: #ffffff; }
  .header { background: #0b5394; color: #ffffff; padding: 24px; text-align: center; }
  .header h1 { margin: 0; font-size: 26px; line-height: 32px; }
  .content { padding: 24px; color: #333333; font-size: 16px; line-height: 24px; }
  .content p { margin: 0 0 16px; }
  .button { display: inline-block; background: #e69138; color: #ffffff;
            padding: 12px 24px; border-radius: 4px; text-decoration: none; }
  .card { border: 1px solid #dddddd; border-radius: 4px; padding: 16px; margin: 0 0 16px; }
  .card h2 { margin: 0 0 8px; font-size: 20px; color: #0b5394; }
  .footer { padding: 24px; color: #888888; font-size: 12px; text-align: center; }
  .footer a { color: #888888; }
  .facts { width: 100%; border-collapse: collapse; margin: 0 0 12px; }
  .fact { width: 33%; padding: 8px; text-align: center; font-size: 13px; color: #555555;
          border-top: 1px solid #eeeeee; }
  @media only screen and (max-width: 620px) {
    .container { width: 100% !important; }
    .content { padding: 16px !important; }
  }
"""
CARD = """
      <div class="card">
        <h2>{title}</h2>
        <p>Our clinicians put together practical advice for the season: what to eat, how to
        sleep better, and which screenings are due this spring. Each article takes about five
        minutes to read and ends with a short checklist you can print or save.</p>
        <p>This month we also answer the questions you sent us most often, from how much water
        is enough on a warm day to whether an afternoon nap helps or hurts your night's sleep.
        If you have a question for the next issue, reply to this email and we'll pass it on to
        the care team.</p>
        <table role="presentation" class="facts"><tr>
          <td class="fact"><strong>5 min</strong><br>reading time</td>
          <td class="fact"><strong>1 page</strong><br>printable checklist</td>
          <td class="fact"><strong>Free</strong><br>for every patient</td>
        </tr></table>
        <p><a href="{url}">Read {title_lower}</a></p>
      </div>"""
TOPICS = [
    ("Eating for energy", "https://clinic.example.com/articles/eating-for-energy"),
    ("Sleep that restores", "https://clinic.example.com/articles/sleep"),
    ("Screenings due this spring", "https://clinic.example.com/articles/screenings"),
    ("Allergy season survival", "https://clinic.example.com/articles/allergies"),
    ("Walking plans for beginners", "https://clinic.example.com/articles/walking"),
]


def mailing_html() -> str:
    cards = "".join(
        CARD.format(title=title, title_lower=title.lower(), url=url) for title, url in TOPICS
    )
    return f"""<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>Spring wellness update</title><style>{STYLE}</style></head>
<body>
<table class="wrapper" role="presentation"><tr><td>
  <div class="container">
    <div class="header"><h1>Spring wellness update</h1></div>
    <div class="content">
      <p>Hi {{{{ first_name | default("there") }}}},</p>
      <p>Spring is a good time to reset habits. Below are this month's most read articles from
      our care team{{% if custom.clinic %}} at {{{{ custom.clinic }}}}{{% endif %}}, and a
      reminder to book your annual check-up if you have not yet done so this year.</p>
      <p>Your annual check-up is the best moment to review medications, update vaccinations
      and talk through anything that has changed since your last visit. Bring a list of the
      medicines and supplements you take, any readings you keep at home such as blood
      pressure or blood sugar, and the questions you would like to ask. Appointments take
      about thirty minutes, and most plans cover one preventive visit a year at no cost.</p>
      <p><a class="button" href="https://clinic.example.com/book?email={{{{ email | urlencode }}}}">
      Book a check-up</a></p>
      {cards}
      <div class="card">
        <h2>From the care team</h2>
        <p>Seasonal allergies, longer days and more time outdoors all change what our bodies
        need. Our nurses see the same questions every spring: whether it is a cold or hay
        fever, how to keep active when pollen counts are high, and how to make the most of the
        extra daylight without losing sleep. This issue collects their answers in one place,
        with the sources they trust and the signs that mean it is time to call us.</p>
        <p>We are also extending our evening hours on Tuesdays and Thursdays until 8 pm, and
        our pharmacy now offers same-day refills for most repeat prescriptions when you order
        before noon. Telehealth visits remain available every weekday for follow-ups that do
        not need an examination in person.</p>
      </div>
      <p>Questions? Reply to this email or call us at
      <a href="tel:+15555550100">+1 555 555 0100</a>.</p>
      <p>Follow us on <a href="https://social.example.com/clinic">social media</a>.</p>
    </div>
    <div class="footer">
      <p>Springfield Clinic, 1 Main Street, Springfield</p>
      <p><a href="https://clinic.example.com/preferences">Email preferences</a></p>
    </div>
  </div>
</td></tr></table>
</body>
</html>"""


def recipients(count: int) -> list[Recipient]:
    names = ["Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "", "Avery"]
    return [
        Recipient(
            email=f"patient{index}@example.org",
            first_name=names[index % len(names)] or None,
            last_name=f"Doe{index}",
            custom={"clinic": "Springfield"} if index % 2 else {},
        )
        for index in range(count)
    ]


def best_and_median(rounds: int, count: int, work: Callable[[], object]) -> tuple[float, float]:
    """Microseconds per message: best and median round."""
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        timings.append((time.perf_counter() - started) / count * 1e6)
    return min(timings), statistics.median(timings)


def rsa_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def smtp_end_to_end(
    prepared: PreparedMailing,
    frame: MessageFrame,
    people: list[Recipient],
    date: datetime,
    threads: int,
) -> tuple[float, float]:
    """(messages per second, Dripstone's CPU µs per message): render, build, send.

    Sent through a pool of `threads` connections to a sink (aiosmtpd, discarding everything)
    in its own process on the same machine. The sink is pure Python and the slower side, so
    the rate is the sink's; the CPU time per message is what Dripstone's side costs.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-c",
            "aiosmtpd.handlers.Sink",
            "-l",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        url = f"smtp://127.0.0.1:{port}?helo=bench.example.com"
        options = TransportOptions(data_dir=Path("."), pool_size=threads, timeout=10)
        with open_transport(url, options) as transport:

            def send(indexes: range) -> int:
                delivered = 0
                for i in indexes:
                    message = prepared.render(people[i], 1_000_000 + i)
                    data = frame.build(
                        message,
                        to_email=people[i].email,
                        list_unsubscribe_url=message.unsubscribe_url,
                        date=date,
                    )
                    outcome = transport.send(data, "bounce@clinic.example.com", people[i].email)
                    delivered += outcome.status is Status.DELIVERED
                return delivered

            count = len(people)
            chunks = [range(start, count, threads) for start in range(threads)]
            started, cpu_started = time.perf_counter(), time.process_time()
            with ThreadPoolExecutor(threads) as pool:
                delivered = sum(pool.map(send, chunks))
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
        if delivered != count:
            raise RuntimeError(f"only {delivered} of {count} messages were delivered")
        return count / elapsed, cpu / count * 1e6
    finally:
        sink.terminate()
        sink.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--smtp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also send through SmtpTransport to an aiosmtpd sink in another process",
    )
    args = parser.parse_args()
    count, rounds = args.messages, args.rounds

    tokens = TrackingTokens(
        "bench-secret-key-that-is-long-enough-0123456789", "https://mail.example.com"
    )
    html = with_unsubscribe_footer(mailing_html())
    started = time.perf_counter()
    prepared = PreparedMailing(subject=SUBJECT, html=html, text=None, tokens=tokens)
    prepare_ms = (time.perf_counter() - started) * 1e3
    people = recipients(count)
    date = datetime.now(UTC)
    frame = MessageFrame(
        from_email="news@clinic.example.com",
        from_name="Springfield Clinic",
        reply_to="care@clinic.example.com",
        message_id_domain="clinic.example.com",
    )
    rendered: list[RenderedMessage] = [
        prepared.render(person, 1_000_000 + i) for i, person in enumerate(people)
    ]

    def render_all(tracked: bool = True) -> None:
        for i, person in enumerate(people):
            prepared.render(person, 1_000_000 + i, tracked=tracked)

    def mime_all(message_frame: MessageFrame, limit: int = count) -> None:
        for i in range(limit):
            message_frame.build(
                rendered[i],
                to_email=people[i].email,
                list_unsubscribe_url=rendered[i].unsubscribe_url,
                date=date,
            )

    def one_shot_all() -> None:
        for i in range(count):
            build(
                rendered[i],
                from_email="news@clinic.example.com",
                from_name="Springfield Clinic",
                to_email=people[i].email,
                reply_to="care@clinic.example.com",
                list_unsubscribe_url=rendered[i].unsubscribe_url,
                list_unsubscribe_mailto=None,
                message_id_domain="clinic.example.com",
                date=date,
            )

    def end_to_end() -> None:
        for i, person in enumerate(people):
            delivery_id = 1_000_000 + i
            message = prepared.render(person, delivery_id)
            frame.build(
                message,
                to_email=person.email,
                list_unsubscribe_url=message.unsubscribe_url,
                date=date,
            )

    sample = frame.build(
        rendered[0],
        to_email=people[0].email,
        list_unsubscribe_url=rendered[0].unsubscribe_url,
        date=date,
    )
    print(f"mailing: {len(html):,} B of HTML template, {len(prepared.links)} tracked links")
    print(f"message: {len(rendered[0].html or ''):,} B of HTML rendered, {len(sample):,} B MIME")
    print(f"prepare (once per send): {prepare_ms:.1f} ms")
    print(f"{count} recipients x {rounds} rounds; µs per message, best / median round")

    figures: list[tuple[str, Callable[[], object], int]] = [
        ("render, tracked", render_all, count),
        ("render, untracked", lambda: render_all(tracked=False), count),
        ("MIME build (MessageFrame)", lambda: mime_all(frame), count),
        ("MIME build (one-shot mime.build)", one_shot_all, count),
    ]
    dkim_count = max(count // 10, 50)
    rsa_frame = MessageFrame(
        from_email="news@clinic.example.com",
        from_name="Springfield Clinic",
        reply_to=None,
        message_id_domain="clinic.example.com",
        dkim_key=DkimKey("s2048", "clinic.example.com", rsa_key()),
    )
    figures.append(
        ("MIME build + DKIM rsa-sha256 2048", lambda: mime_all(rsa_frame, dkim_count), dkim_count)
    )
    ed25519_frame = MessageFrame(
        from_email="news@clinic.example.com",
        from_name="Springfield Clinic",
        reply_to=None,
        message_id_domain="clinic.example.com",
        dkim_key=DkimKey(
            "e2026", "clinic.example.com", base64.b64encode(os.urandom(32)), "ed25519-sha256"
        ),
    )
    figures.append(
        (
            "MIME build + DKIM ed25519-sha256",
            lambda: mime_all(ed25519_frame, dkim_count),
            dkim_count,
        )
    )
    figures.append(("render + MIME (end to end)", end_to_end, count))

    results: dict[str, float] = {}
    for label, work, per in figures:
        best, median = best_and_median(rounds, per, work)
        results[label] = best
        print(f"  {label:<36} {best:8.1f} µs   {median:8.1f} µs")
    per_message = results["render + MIME (end to end)"]
    print(f"render + MIME on one core: {1e6 / per_message:,.0f} messages/s")
    for label in ("MIME build + DKIM rsa-sha256 2048", "MIME build + DKIM ed25519-sha256"):
        with_dkim = results["render, tracked"] + results[label]
        print(f"render + MIME + {label.split('DKIM ')[1]}: {1e6 / with_dkim:,.0f} messages/s")

    if args.smtp:
        for threads in (1, 4):
            rate, cpu = smtp_end_to_end(prepared, frame, people, date, threads)
            print(
                f"render + MIME + SMTP to a local aiosmtpd sink, {threads} connection(s): "
                f"{rate:,.0f} messages/s, sender CPU {cpu:.0f} µs per message"
            )

    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(end_to_end)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
