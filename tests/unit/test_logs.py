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
