"""Personal data in logs: phone numbers masked, times and ids untouched."""

import pytest
import structlog

from streams.logs import mask_personal_data, mask_phone


@pytest.mark.parametrize(
    "text", ["+1 212 555 0147", "call back on 0171-555-0147 please", "(212) 555-0147"]
)
def test_phone_numbers_are_masked(text: str) -> None:
    """No run of the original digits long enough to dial survives masking."""
    masked = mask_phone(text)
    assert "555" not in masked.replace(" ", "").replace("-", "")[4:]
    assert "*" in masked


@pytest.mark.parametrize(
    "text", ["2026-11-25T00:56:15.722Z", "kafka://127.0.0.1:52729", "P-FDR1-T1-F2-B3-1", "60879417"]
)
def test_times_addresses_and_ids_are_left_alone(text: str) -> None:
    """Timestamps, broker URLs, node ids and short numbers are not mistaken for phones."""
    assert mask_phone(text) == text


def test_caller_and_notes_fields_never_log_in_clear() -> None:
    """The caller and notes keys are masked whatever they hold."""
    with structlog.testing.capture_logs(processors=[mask_personal_data]) as logs:
        structlog.get_logger().info("call", caller="+44 20 7946 0958", notes="flat 3, Mrs Smith")
    assert logs[0]["notes"] == "***"
    assert "7946" not in logs[0]["caller"]


@pytest.mark.parametrize(
    "text",
    [
        "GET /v1/outages?q=%2B1%20555%20123%204567&pad=aaa HTTP/1.1",
        "bytearray(b'/v1/outages?q=%2B1%20555%20123%204567aaaaaaaa...')",  # clipped by aiohttp
        "q=1+555+123+4567",
        "q=%28555%29%20123-4567",
    ],
)
def test_url_encoded_phone_numbers_are_masked(text: str) -> None:
    """A number as a URL carries it (%2B, %20, +) is masked like a plain one."""
    masked = mask_phone(text)
    assert "123" not in masked and "4567" not in masked
    assert "*" in masked


@pytest.mark.parametrize(
    "text", ["/v1/outages?q=Birch%20Street%2010", "at=2026-11-25%2000%3A56%3A15", "a+b=c%20d"]
)
def test_url_encoded_text_without_a_number_is_left_as_sent(text: str) -> None:
    """Encoded addresses and times are not decoded or changed when no phone is in them."""
    assert mask_phone(text) == text
