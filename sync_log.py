"""What sla-sync says while it works: the CLI's logging set-up and the live progress line.

The CLI configures Python's `logging` here, once per command; library modules only take a
logger (`logging.getLogger("sla_sync.…")`) and never configure it. Every log line goes to
stderr, timestamped in UTC (ISO 8601) and levelled: as text
(`2026-03-02T12:00:00.123Z WARNING message`, each line of a message prefixed) or as JSON,
one object per line with `time`, `level`, `message` and the record's structured fields
(`event`, `run`, `record`, `method`, `url`, `status`, ...: whatever `extra=` carried).
`-v` shows debug records (the HTTP requests), `-q` only warnings and errors. Only the
`sla_sync` loggers are shown: a library's own debug lines (urllib3 quotes whole URLs) are not.

The progress line is a single line on stderr, redrawn in place, for a terminal only: the
CLI turns it on when stderr is a terminal and -q is not given. The sync loop reports to it
through a plain callback (`Progress`), so it knows nothing of terminals.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import IO, Any

LOGGER = "sla_sync"
FORMATS = ("text", "json")
#: The attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
#: Erase the terminal's current line (carriage return, then ANSI "erase to end of line").
CLEAR = "\r\x1b[K"


def stamp(created: float) -> str:
    """An instant as ISO 8601 in UTC to the millisecond: 2026-03-02T12:00:00.123Z."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")\
        .replace("+00:00", "Z")


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a record carries (its `extra=`)."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class TextFormatter(logging.Formatter):
    """`TIME LEVEL message`, the prefix on every line of a message that has several."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"{stamp(record.created)} {record.levelname}"
        return "\n".join(f"{prefix} {line}" for line in record.getMessage().splitlines()
                         or [""])


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, message, then the structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"time": stamp(record.created),
                                "level": record.levelname.lower(),
                                "message": record.getMessage()}
        for key, value in fields_of(record).items():
            data.setdefault(key, value)
        return json.dumps(data, ensure_ascii=False, default=str)


class StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is when the record comes (click's test runner swaps
    it), clearing the progress line first and drawing it again after."""

    def __init__(self, level: int, progress: ProgressLine | None = None):
        super().__init__(level)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            stream = sys.stderr
            if self.progress is not None:
                self.progress.clear()
            stream.write(text + "\n")
            stream.flush()
            if self.progress is not None:
                self.progress.redraw()
        except Exception:  # noqa: BLE001 (logging's contract: a broken stream is not fatal)
            self.handleError(record)


class Setup:
    """The logging the CLI configured for one command: level, format, the progress line."""

    def __init__(self, level: int, fmt: str, progress: ProgressLine | None):
        self.level, self.format, self.progress = level, fmt, progress
        self.formatter: logging.Formatter = JsonFormatter() if fmt == "json" \
            else TextFormatter()
        self.handler = StderrHandler(level, progress)
        self.handler.setFormatter(self.formatter)
        self.previous_level = logging.NOTSET  # the sla_sync logger's, restored by reset()

    @property
    def verbose(self) -> bool:
        return self.level <= logging.DEBUG

    def shows(self, level: int) -> bool:
        return level >= self.level

    def line(self, level: int, message: str, **fields: Any) -> str:
        """A record formatted without going through a logger: for a signal handler, which
        must not take the handler's lock (it may interrupt a write holding it)."""
        record = logging.makeLogRecord({"levelno": level,
                                        "levelname": logging.getLevelName(level),
                                        "msg": message, **fields})
        return self.formatter.format(record) + "\n"


_active: Setup | None = None


def configure(verbose: bool = False, quiet: bool = False, fmt: str = "text",
              tty: bool | None = None) -> Setup:
    """Set up logging for one command (replacing an earlier set-up in the same process);
    `tty` is whether stderr is a terminal that can redraw a line (asked of sys.stderr and
    $TERM when None): the progress line is drawn only there, and never with `quiet`."""
    global _active
    reset()
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    if tty is None:
        tty = _is_terminal(sys.stderr)
    progress = ProgressLine() if tty and not quiet else None
    setup = Setup(level, fmt, progress)
    logger = logging.getLogger(LOGGER)
    setup.previous_level = logger.level
    logger.addHandler(setup.handler)
    # The logger lets through what the handler shows (and never less than it did, so a
    # handler someone else put further up, pytest's caplog say, still gets its records).
    logger.setLevel(min(level, logger.getEffectiveLevel()))
    _active = setup
    return setup


def reset() -> None:
    """Undo `configure`: the handler removed, the logger's level as it was."""
    global _active
    if _active is None:
        return
    logger = logging.getLogger(LOGGER)
    logger.removeHandler(_active.handler)
    logger.setLevel(_active.previous_level)
    if _active.progress is not None:
        _active.progress.close()
    _active = None


def active() -> Setup | None:
    return _active


def _is_terminal(stream: Any) -> bool:
    """A terminal that understands the erase-line sequence (not TERM=dumb: Emacs' shell)."""
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False


# -- the progress line -------------------------------------------------------------------

#: What the sync loop reports: a stage ("reading", "evaluating", "writing") and its counts
#: so far: {"pages", "records"} while reading, {"done", "total"} otherwise.
Progress = Callable[[str, Mapping[str, int]], None]


class ProgressLine:
    """One line on stderr, redrawn at most every `every` seconds (and at once when the stage
    changes): `evaluating: 4,000/10,000 (1,250/s)`. `clock` is injectable for tests."""

    def __init__(self, stream: IO[str] | None = None, every: float = 0.2,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.every, self.clock = every, clock
        self.stage: str | None = None
        self.counts: Mapping[str, int] = {}
        self.started = 0.0
        self.drawn_at = -1e18
        self.shown = False

    def __call__(self, stage: str, counts: Mapping[str, int]) -> None:
        now = self.clock()
        if stage != self.stage:
            self.stage, self.started, self.drawn_at = stage, now, -1e18
        self.counts = counts
        if now - self.drawn_at >= self.every:
            self.drawn_at = now
            self.redraw()

    def _out(self) -> IO[str]:
        return self.stream or sys.stderr

    def redraw(self) -> None:
        """Draw the latest counts (after a log record too, which cleared the line)."""
        if self.stage is not None:
            out = self._out()
            out.write(CLEAR + render(self.stage, self.counts, self.clock() - self.started))
            out.flush()
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            out = self._out()
            out.write(CLEAR)
            out.flush()
            self.shown = False

    def close(self) -> None:
        """The work is done: the line goes, and is not drawn again."""
        self.clear()
        self.stage = None


def render(stage: str, counts: Mapping[str, int], seconds: float) -> str:
    """`reading: 3 pages, 250 records (1,200/s)`, `writing: 30/45 (12/s)`."""
    if "total" in counts:
        count = counts.get("done", 0)
        text = f"{stage}: {count:,}/{counts['total']:,}"
    else:
        count = counts.get("records", 0)
        text = f"{stage}: " + ", ".join(f"{value:,} {key}" for key, value in counts.items())
    if seconds > 0 and count:
        text += f" ({count / seconds:,.0f}/s)"
    return text
