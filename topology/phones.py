"""The phone book: which premise a customer's number belongs to (from the utility's CRM).

A CSV with the header `phone,premise_id`. Numbers compare by their digits, then by their last
nine when those are unique, so '+49 30 5551 0203', '0049 30 55510203' and '030 55510203'
all find the same flat.
It holds personal data: keep the file readable by the service only.
"""

import csv
from collections.abc import Iterable
from pathlib import Path

from topology.model import Topology, TopologyError

TAIL = 9  # digits that tell numbers apart within one country, whatever prefix was dialled


def digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit())


class PhoneBook:
    def __init__(self, entries: dict[str, str]) -> None:
        self._by_digits = entries
        tails: dict[str, set[str]] = {}
        for number, premise in entries.items():
            tails.setdefault(number[-TAIL:], set()).add(premise)
        self._by_tail = {tail: next(iter(p)) for tail, p in tails.items() if len(p) == 1}

    def __len__(self) -> int:
        return len(self._by_digits)

    def premise(self, phone: str) -> str | None:
        number = digits(phone)
        if len(number) < 7:
            return None
        return self._by_digits.get(number) or self._by_tail.get(number[-TAIL:])


def load_phone_book(paths: Iterable[Path], topology: Topology) -> PhoneBook:
    """Read the files; a premise the network does not know is refused with its line."""
    entries: dict[str, str] = {}
    for path in paths:
        with Path(path).open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or [c.strip() for c in header] != ["phone", "premise_id"]:
                raise TopologyError("header must be 'phone,premise_id'", 1, str(path))
            for line, cells in enumerate(reader, start=2):
                if len(cells) != 2:
                    raise TopologyError(f"expected 2 columns, got {len(cells)}", line, str(path))
                phone, premise = cells[0].strip(), cells[1].strip()
                if len(digits(phone)) < 7:
                    raise TopologyError(f"{phone!r} is not a phone number", line, str(path))
                if premise not in topology or topology.node(premise).kind != "premise":
                    raise TopologyError(f"unknown premise {premise!r}", line, str(path))
                entries[digits(phone)] = premise
    return PhoneBook(entries)
