"""structlog setup: JSON lines for machines, aligned console output for people, on stderr."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(*, format: str, level: str) -> None:
    """Route structlog to stderr (stdout belongs to command output) in the chosen format."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # A failed early renewal of a role's credentials is a warning with a traceback there, once
    # per call; aws_roles logs it once per change, in this format.
    logging.getLogger("aiobotocore.credentials").setLevel(logging.ERROR)
