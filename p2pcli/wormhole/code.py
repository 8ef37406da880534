"""Short codes for private shares: `7-guitarist-revenge` (issue 18).

A code is a number and two or three words from the PGP word list, as magic-wormhole's.
The words alternate between the list's two halves (three syllables first, then two), so a
word typed in the wrong place or dropped is noticed before any network traffic.

The two parts do different jobs:
- the number names the rendezvous room: `room()` hashes it, so the signaling server sees
  a 64-hex room like any content hash and never the words;
- the whole normalised code is the SPAKE2 password (`password()`): the server, which can
  guess the number from the room, still needs the words, and gets one guess per try.

Sans-IO: randomness comes in as an argument (`secrets.SystemRandom()` by default), no I/O.
"""

from __future__ import annotations

import difflib
import hashlib
import random
import re
import secrets
from dataclasses import dataclass

from p2pcli.errors import UsageError
from p2pcli.wormhole.wordlist import FIRST, SECOND

#: Version label mixed into the room hash and the PAKE: codes of another version never meet.
VERSION = b"p2p-wormhole-v1"
#: Default number range for a new code: short to type, and the sender takes another number
#: if a room is busy, so few numbers are enough.
NUMBER_MAX = 999
#: Largest number accepted when parsing (other senders may pick from a larger range).
NUMBER_LIMIT = 10**6 - 1
WORDS_MIN, WORDS_MAX = 2, 3

_FIRST_SET = frozenset(FIRST)
_SECOND_SET = frozenset(SECOND)
# Anything that is not a letter or a digit separates parts: "7 guitarist revenge",
# "7_Guitarist-Revenge", "7--guitarist.revenge" are all the same code.
_SEPARATORS = re.compile(r"[^0-9a-z]+")


class CodeError(UsageError):
    """The text is not a valid code; the message names the part that is wrong."""


def _list_for(position: int) -> tuple[str, ...]:
    """The list the word at `position` (0 = first word) comes from."""
    return FIRST if position % 2 == 0 else SECOND


@dataclass(frozen=True)
class Code:
    """A parsed, normalised code."""

    number: int
    """Names the room; not secret (the server can enumerate numbers)."""
    words: tuple[str, ...]
    """Two or three lower-case words, alternating FIRST / SECOND."""

    def __post_init__(self) -> None:
        if not 1 <= self.number <= NUMBER_LIMIT:
            raise CodeError(f"code number {self.number} out of range 1-{NUMBER_LIMIT}")
        if not WORDS_MIN <= len(self.words) <= WORDS_MAX:
            raise CodeError(f"a code has {WORDS_MIN} or {WORDS_MAX} words after the number, "
                            f"not {len(self.words)}")
        for i, word in enumerate(self.words):
            if word not in (_FIRST_SET if i % 2 == 0 else _SECOND_SET):
                raise CodeError(_word_problem(i, word))

    def __str__(self) -> str:
        return "-".join((str(self.number), *self.words))

    def room(self) -> str:
        """The signaling room: 64 hex digits from the number alone, never the words."""
        return hashlib.sha256(VERSION + b"/room/" + str(self.number).encode()).hexdigest()

    def password(self) -> bytes:
        """The SPAKE2 password: the whole normalised code."""
        return str(self).encode("ascii")


def _word_problem(position: int, word: str) -> str:
    """One sentence on why `word` cannot be at `position`, with a suggestion."""
    nth = ("first", "second", "third")[position] if position < 3 else f"#{position + 1}"
    expected = _list_for(position)
    other = SECOND if expected is FIRST else FIRST
    if word in other:
        return (f"the {nth} word {word!r} belongs in another place of a code "
                f"(words alternate between two lists); check the order of the words")
    close = difflib.get_close_matches(word, expected, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"the {nth} word {word!r} is not a code word{hint}"


def normalise(text: str) -> str:
    """`text` in canonical form: lower case, parts joined by one '-', no leading zeros.
    Only the shape is touched; `parse` checks the words."""
    parts = [p for p in _SEPARATORS.split(text.strip().lower()) if p]
    if parts and parts[0].isdigit():
        parts[0] = str(int(parts[0]))
    return "-".join(parts)


def parse(text: str) -> Code:
    """The code in `text`, or CodeError saying which part is wrong."""
    parts = normalise(text).split("-")
    if not parts or not parts[0]:
        raise CodeError("empty code: give the code the sender printed, like 7-guitarist-revenge")
    if not parts[0].isdigit():
        raise CodeError(f"a code starts with a number, like 7-guitarist-revenge, not {parts[0]!r}")
    words = parts[1:]
    for word in words:
        if not word.isalpha():
            raise CodeError(f"{word!r} is not a word: a code is a number then words")
    return Code(int(parts[0]), tuple(words))


def generate(rng: random.Random | None = None, *, words: int = 2,
             number_max: int = NUMBER_MAX) -> Code:
    """A new random code. `rng` defaults to the OS's secure generator; tests pass a seeded one."""
    rng = rng or secrets.SystemRandom()
    return Code(rng.randint(1, number_max),
                tuple(rng.choice(_list_for(i)) for i in range(words)))


def complete(prefix: str, *, words: int = WORDS_MIN) -> list[str]:
    """Completions of a partly typed code (for the shell's tab completion of `receive`):
    every code-so-far whose last word starts with what was typed, sorted; a '-' is
    appended while more words may follow. Nothing is completed before the number."""
    norm = normalise(prefix)
    trailing = bool(prefix) and not prefix[-1].isalnum() and norm != ""
    parts = norm.split("-") if norm else []
    if not parts or not parts[0].isdigit():
        return []
    if trailing or len(parts) == 1:
        done, partial = parts, ""
        if len(parts) == 1 and not trailing:
            return [parts[0] + "-"]
    else:
        done, partial = parts[:-1], parts[-1]
    position = len(done) - 1
    if position >= words:
        return []
    head = "-".join(done) + "-"
    more = "-" if position + 1 < words else ""
    return sorted(head + w + more for w in _list_for(position) if w.startswith(partial))


# A number, a separator, a letter, then anything without an ASCII digit: the same texts as
# the old `\s*\d+[^0-9a-z]+[a-z]+([^0-9a-z]+[a-z]*)*\s*`, whose nested quantifiers took
# seconds on '1-a' + '-' * 25 + '0' (it runs on every `p2p stream` argument). Here the number
# is taken whole (possessive `\d++`) and no two neighbouring steps can trade characters, so a
# failing match backtracks linearly. A non-ASCII digit is both a \d and a separator: when
# letters follow the number directly, its last character may have been that separator (the
# first branch: two or more digits, the last one not ASCII).
_CODE_SHAPE = re.compile(r"\s*(?:\d++(?<![0-9])(?<=\d\d)|\d++[^0-9a-z]+)[a-z][^0-9]*", re.I)


def looks_like_code(text: str) -> bool:
    """Whether a command's HASH_OR_LINK argument is meant as a code (`stream CODE`): a
    number, a separator, then letters. A hash has no separator, a link starts with its
    scheme; an existing file (`1-movie.torrent`) is never taken for a code. `parse` then
    says what is wrong with a mistyped one."""
    import os

    return bool(_CODE_SHAPE.fullmatch(text)) and not os.path.exists(text)
