"""The alert demo's local test server: an SMTP server and an HTTP receiver on 127.0.0.1
that keep every message they are sent as a file in a folder, and deliver nothing.

    python examples/alerts/inbox.py            # SMTP on 127.0.0.1:2525, HTTP on 127.0.0.1:8025
    python examples/alerts/inbox.py --folder .demo/alerts/inbox --smtp 2525 --http 8025

Each email becomes `NNNN-email.eml` (the envelope's recipients first, as `X-Rcpt-To:`
lines), each POST `NNNN-http.json` (path, headers, body). Standard library only, so the
demo needs nothing but sla-sync; Ctrl-C stops it. Not a mail server: it answers only
loopback clients, accepts every message and sends none on.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


class Inbox:
    """Where received messages go: one numbered file each."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        start = max((int(p.name[:4]) for p in folder.glob("[0-9][0-9][0-9][0-9]-*")),
                    default=0)
        self.numbers = itertools.count(start + 1)
        self.lock = threading.Lock()

    def keep(self, kind: str, suffix: str, data: bytes) -> Path:
        with self.lock:
            path = self.folder / f"{next(self.numbers):04d}-{kind}.{suffix}"
            path.write_bytes(data)
        print(f"inbox: {path}", flush=True)
        return path


def smtp_handler(inbox: Inbox) -> type[socketserver.StreamRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        """Just enough SMTP (RFC 5321) for smtplib: EHLO/HELO, MAIL, RCPT, DATA, RSET,
        NOOP, QUIT."""

        def reply(self, line: str) -> None:
            self.wfile.write(line.encode() + b"\r\n")

        def handle(self) -> None:
            self.reply("220 inbox ESMTP (the sla-sync alert demo)")
            recipients: list[str] = []
            while True:
                line = self.rfile.readline(10_000)
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"EHLO":
                    self.reply("250-inbox")
                    self.reply("250-8BITMIME")
                    self.reply("250 SMTPUTF8")
                elif verb in (b"HELO", b"MAIL", b"NOOP"):
                    self.reply("250 OK")
                elif verb == b"RSET":
                    recipients = []
                    self.reply("250 OK")
                elif verb == b"RCPT":
                    recipients.append(line.decode(errors="replace").partition(":")[2]
                                      .strip().strip("<>"))
                    self.reply("250 OK")
                elif verb == b"DATA":
                    self.reply("354 end with <CRLF>.<CRLF>")
                    self.receive(recipients)
                    recipients = []
                    self.reply("250 OK kept")
                elif verb == b"QUIT":
                    self.reply("221 bye")
                    return
                else:
                    self.reply("502 not implemented")

        def receive(self, recipients: list[str]) -> None:
            lines = [f"X-Rcpt-To: {r}\r\n".encode() for r in recipients]
            while True:
                line = self.rfile.readline(1_000_000)
                if not line or line in (b".\r\n", b".\n"):
                    break
                lines.append(line[1:] if line.startswith(b"..") else line)
            inbox.keep("email", "eml", b"".join(lines))

    return Handler


def http_handler(inbox: Inbox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            inbox.keep("http", "json", json.dumps(
                {"path": self.path, "headers": dict(self.headers), "body": body},
                indent=2, ensure_ascii=False).encode())
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


class _SMTPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def serve(folder: Path, smtp_port: int = 2525, http_port: int = 8025,
          ) -> tuple[int, int, Callable[[], None]]:
    """Start both servers in threads: (SMTP port, HTTP port, stop). Port 0: any free one."""
    inbox = Inbox(folder)
    smtp = _SMTPServer((HOST, smtp_port), smtp_handler(inbox))
    web = ThreadingHTTPServer((HOST, http_port), http_handler(inbox))
    for server in (smtp, web):
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()

    def stop() -> None:
        for server in (smtp, web):
            server.shutdown()
            server.server_close()
    return smtp.server_address[1], web.server_address[1], stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=Path(".demo/alerts/inbox"))
    parser.add_argument("--smtp", type=int, default=2525)
    parser.add_argument("--http", type=int, default=8025)
    args = parser.parse_args()
    smtp_port, http_port, stop = serve(args.folder, args.smtp, args.http)
    print(f"inbox: SMTP on {HOST}:{smtp_port}, HTTP on {HOST}:{http_port}, keeping messages "
          f"in {args.folder} (Ctrl-C stops)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stop()


if __name__ == "__main__":
    main()
