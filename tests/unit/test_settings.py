"""Settings from the environment: lists of files as people write them."""

from pathlib import Path

import pytest

from streams.settings import Settings


@pytest.mark.parametrize(
    "text",
    [
        "/srv/net.csv,/srv/more.jsonl",
        " /srv/net.csv , /srv/more.jsonl ",
        '["/srv/net.csv", "/srv/more.jsonl"]',
    ],
)
def test_network_files_are_comma_separated_or_a_json_list(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OUTAGE_TOPOLOGY takes 'a.csv,b.jsonl' as the docs say, and a JSON list as before."""
    monkeypatch.setenv("OUTAGE_TOPOLOGY", text)
    assert Settings().topology == [Path("/srv/net.csv"), Path("/srv/more.jsonl")]


def test_one_network_file_needs_no_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """A single path is a list of one (it failed with 'error parsing value' before)."""
    monkeypatch.setenv("OUTAGE_TOPOLOGY", "/path/net.csv")
    monkeypatch.setenv("OUTAGE_PHONE_BOOK", "/path/phones.csv")
    settings = Settings()
    assert settings.topology == [Path("/path/net.csv")]
    assert settings.phone_books == [Path("/path/phones.csv")]
