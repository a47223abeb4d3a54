"""structlog set-up, once per entry point: JSON lines, personal data masked.

Phone numbers and free-text notes never reach a log in clear: `mask_personal_data` runs on
every entry before it is rendered.
"""

import logging
import re
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import unquote_plus

import structlog

# 9 to 15 digits with the usual separators, not part of a longer token: dates, times and
# addresses do not match, phone numbers do.
PHONE = re.compile(r"(?<![\w.:/-])\+?\(?\d(?:[\s().-]{0,2}\d){8,14}(?![\w.:/-])")
# A run of URL-encoded text: '%2B1%20212%20555%200147' or '1+212+555+0147' in a query string.
ENCODED = re.compile(r"(?:%[0-9A-Fa-f]{2}|[\w+().-])+")
# Decoded, a number may run straight into the next parameter's text ('...0147&pad=aaa' once
# clipped to '...0147aaa'), so there only digits and separators may not follow.
PHONE_DECODED = re.compile(PHONE.pattern.removesuffix(r"(?![\w.:/-])") + r"(?![\d.:/-])")
SECRET_KEYS = frozenset({"caller", "phone", "notes"})


def mask_phone(text: str) -> str:
    """'+1 212 555 0147' -> '+1 21*******47': enough to tell calls apart, not to dial.

    URL-encoded numbers (a request line aiohttp could not parse is logged as sent) are decoded
    and masked too.
    """

    def hide(match: re.Match[str]) -> str:
        value = match.group()
        return value[:5] + "*" * (len(value) - 7) + value[-2:]

    def decoded(match: re.Match[str]) -> str:
        run = match.group()
        if "%" not in run and "+" not in run:
            return run
        plain = unquote_plus(run)
        return PHONE_DECODED.sub(hide, plain) if PHONE_DECODED.search(plain) else run

    return PHONE.sub(hide, ENCODED.sub(decoded, text))


def mask_personal_data(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if key in SECRET_KEYS and value:
            event_dict[key] = "***" if key == "notes" else mask_phone(str(value))
        elif isinstance(value, str):
            event_dict[key] = mask_phone(value)
    return event_dict


def configure(level: str = "INFO", fmt: str = "json") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_personal_data,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # faust and aiokafka log through the standard library: keep them to warnings, and mask
    # them too (a library may print a record it could not handle).
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())


class MaskingFilter(logging.Filter):
    """Masks phone numbers in standard-library records, after their arguments are merged."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_phone(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            # A traceback's last line repeats the exception's message: mask it as well.
            text = "".join(traceback.format_exception(*record.exc_info))
            record.msg = f"{masked}\n{mask_phone(text)}"
            record.args, record.exc_info, record.exc_text = None, None, None
        return True
