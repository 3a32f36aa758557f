"""Structured logging (structlog): JSON lines in services, readable key=value on a terminal.

Every line goes through ``spillwatch.redact`` on its way out (structlog events, formatted
tracebacks and the standard-library loggers of third-party clients alike): camera URLs with
credentials, tokens in query strings and secret-named fields never reach a log."""

from __future__ import annotations

import logging
import sys

import structlog

from spillwatch.redact import redact_text, structlog_processor


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write (a test runner or a daemon may
    swap it; a logger must never hold on to a closed stream)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    lvl = getattr(logging, level.upper(), logging.INFO)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog_processor,  # after the traceback is text: it is redacted too
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(lvl, logging.WARNING), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


class RedactingFilter(logging.Filter):
    """Redacts standard-library log records (kafka-python, httpx, ...) before a handler writes them."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string: leave the record to logging
            return True
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = redact_text(message), None
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def get_logger(name: str, **bound: object) -> structlog.typing.FilteringBoundLogger:
    # a lazy proxy: every call uses the configuration of that moment (configure_logging may run after
    # a module created its logger: the CLI configures logging after importing the stages)
    return structlog.get_logger(name, **bound)
