"""The phone book: numbers written any way find their flat; bad files are refused by line."""

from pathlib import Path

import pytest

from topology.load import load_topology
from topology.model import TopologyError
from topology.phones import PhoneBook, load_phone_book
from topology.samples import HEAT_CSV, PHONES_CSV


def test_the_sample_phone_book_finds_a_flat_however_the_number_is_written() -> None:
    """International, 00-prefixed and national forms of one number give the same premise."""
    book = load_phone_book([PHONES_CSV], load_topology(HEAT_CSV))
    assert len(book) == 240
    for written in ("+49 30 55520207", "0049 (30) 5552-0207", "030 5552 0207"):
        assert book.premise(written) == "P-HSUB2-B2-07", written
    assert book.premise("+49 30 5559 9999") is None
    assert book.premise("12") is None


def test_a_tail_shared_by_two_premises_finds_neither() -> None:
    """The last nine digits only decide when they are unique."""
    book = PhoneBook({"4930123456789": "P-1", "4340123456789": "P-2"})
    assert book.premise("+49 30 123456789") == "P-1"  # all digits still match
    assert book.premise("0 123456789") is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("number,premise\n", "header"),
        ("phone,premise_id\n+49 30 1234567,P-NOWHERE\n", "unknown premise"),
        ("phone,premise_id\n12,P-HSUB1-B1-01\n", "not a phone number"),
        ("phone,premise_id\n+49 30 1234567\n", "expected 2 columns"),
    ],
)
def test_a_bad_phone_book_is_refused_with_its_line(tmp_path: Path, text: str, reason: str) -> None:
    """Header, columns, numbers and premises are checked against the network."""
    path = tmp_path / "phones.csv"
    path.write_text(text)
    with pytest.raises(TopologyError, match=reason):
        load_phone_book([path], load_topology(HEAT_CSV))
