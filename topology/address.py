"""Address normalisation and the address index used to place a hotline call on the network.

Owns the one definition of "the same address" (`normalise_address`) and the lookups built on
it: exact match, a strict fuzzy match that may resolve a call, and looser type-ahead
suggestions. Knows nothing about the tree; the caller hands entries in preference order.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from collections.abc import Iterable
from typing import NamedTuple

from rapidfuzz import fuzz, process

# One canonical spelling per word, so "St." and "Street" normalise alike. Full words rather
# than abbreviations because the normalised form also shows up in error messages.
_CANONICAL: dict[str, str] = {
    "st": "street",
    "str": "street",
    "ave": "avenue",
    "av": "avenue",
    "rd": "road",
    "blvd": "boulevard",
    "bd": "boulevard",
    "dr": "drive",
    "ln": "lane",
    "ct": "court",
    "pl": "place",
    "sq": "square",
    "hwy": "highway",
    "pkwy": "parkway",
    "w": "west",
    "e": "east",
    "n": "north",
    "s": "south",
    "apt": "flat",
    "apartment": "flat",
    "unit": "flat",
    "fl": "flat",
}

_APOSTROPHES = re.compile("['\u2019`]")
# Any run of punctuation, symbols or underscores, except a hyphen between two digits ("142-30").
_SEPARATORS = re.compile(r"(?!(?<=\d)-(?=\d))[\W_]+")
_ORDINAL = re.compile(r"^(\d+)(?:st|nd|rd|th)$")
_NUMBER = re.compile(r"\d+")

# Below this a suggestion is noise rather than help.
_SUGGEST_CUTOFF = 50.0


def normalise_address(text: str) -> str:
    """Return the comparable form of an address: "212 W. 133rd St" -> "212 west 133 street"."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = _APOSTROPHES.sub("", folded)
    tokens = _SEPARATORS.sub(" ", folded).split()
    out: list[str] = []
    for token in tokens:
        ordinal = _ORDINAL.match(token)
        if ordinal:
            out.append(ordinal.group(1))
        else:
            out.append(_CANONICAL.get(token, token))
    return " ".join(out)


def _numbers(key: str) -> tuple[str, ...]:
    return tuple(_NUMBER.findall(key))


class AddressMatch(NamedTuple):
    """One candidate node for an address, with how well its address matched (0-100)."""

    node_id: str
    address: str
    score: float


class AddressIndex:
    """Normalised address -> node, built once. Entries come in preference order: when several
    nodes share a normalised address, the first entry wins."""

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        self._by_key: dict[str, tuple[str, str]] = {}
        for node_id, address in entries:
            key = normalise_address(address)
            if key and key not in self._by_key:
                self._by_key[key] = (node_id, address)
        self._keys: list[str] = sorted(self._by_key)
        self._by_numbers: dict[tuple[str, ...], list[str]] = {}
        for key in self._keys:
            self._by_numbers.setdefault(_numbers(key), []).append(key)

    def __len__(self) -> int:
        return len(self._keys)

    def _match(self, key: str, score: float) -> AddressMatch:
        node_id, address = self._by_key[key]
        return AddressMatch(node_id, address, round(score, 1))

    def exact(self, text: str) -> AddressMatch | None:
        """The node whose normalised address equals the normalised `text`, if any."""
        key = normalise_address(text)
        return self._match(key, 100.0) if key in self._by_key else None

    def fuzzy(self, text: str, cutoff: float = 90.0) -> AddressMatch | None:
        """The closest address scoring at least `cutoff`, for resolving a call.

        Only addresses carrying exactly the same numbers compete: "14 Birch Street" is one
        edit from "12 Birch Street" but a different building, and a wrong building puts the
        call into the wrong incident. Typos in the words are what this forgives.
        """
        key = normalise_address(text)
        if not key:
            return None
        scored = [
            (fuzz.ratio(key, candidate), self._by_key[candidate][0], candidate)
            for candidate in self._by_numbers.get(_numbers(key), [])
        ]
        scored = [item for item in scored if item[0] >= cutoff]
        if not scored:
            return None
        score, _, best = min(scored, key=lambda item: (-item[0], item[1]))
        return self._match(best, score)

    def suggest(self, text: str, limit: int = 5) -> list[AddressMatch]:
        """Type-ahead: addresses starting with `text` (shortest first), then fuzzy matches."""
        key = normalise_address(text)
        if not key or limit <= 0:
            return []
        prefixed: list[str] = []
        start = bisect_left(self._keys, key)
        for candidate in self._keys[start:]:
            if not candidate.startswith(key):
                break
            prefixed.append(candidate)
        prefixed.sort(key=lambda candidate: (len(candidate), candidate))
        out = [self._match(candidate, 100.0) for candidate in prefixed[:limit]]
        if len(out) < limit:
            seen = set(prefixed)
            fuzzy = [
                self._match(candidate, score)
                for candidate, score, _ in process.extract(
                    key,
                    self._keys,
                    scorer=fuzz.WRatio,
                    limit=None,
                    score_cutoff=_SUGGEST_CUTOFF,
                )
                if candidate not in seen
            ]
            fuzzy.sort(key=lambda match: (-match.score, match.node_id))
            out.extend(fuzzy[: limit - len(out)])
        return out
