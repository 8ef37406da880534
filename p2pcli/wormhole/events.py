"""Events of `p2p send` / `p2p receive` (issue 18), beside p2pcli/events.py's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..events import Event


@dataclass(frozen=True, kw_only=True)
class CodeReady(Event):
    kind: ClassVar[str] = "code"
    code: str
    "What the receiver types: `p2p receive CODE`."
    name: str
    "The share's name."
    size: int
    "Its size in bytes."


@dataclass(frozen=True, kw_only=True)
class CodeOffer(Event):
    kind: ClassVar[str] = "offer"
    name: str
    "The share's name, as the sender sealed it (the manifest's must match)."
    size: int
    "Its size in bytes."
    sender: str
    "The name the sender gave (`--from`, default its user name)."
    hash: str
    "The content hash, which travels only inside the code exchange."


@dataclass(frozen=True, kw_only=True)
class CodeVerified(Event):
    kind: ClassVar[str] = "verified"
    peer: str
    "The peer that proved the code; its DTLS fingerprint is bound to it."


@dataclass(frozen=True, kw_only=True)
class Sent(Event):
    kind: ClassVar[str] = "sent"
    peer: str
    "The receiver, which closed its connection."
    bytes: int
    "Bytes of pieces sent to it."


@dataclass(frozen=True, kw_only=True)
class CodeSeeding(Event):
    kind: ClassVar[str] = "code-seeding"
    code: str
    "The code it serves under (the one it received with)."
    hash: str
    "The content id served."
    tries: int
    "Wrong codes it allows before it closes the code (`--tries`)."
    link: str | None = None
    "The p2p:// link, with `--public-seed` only (then the hash is announced); else null."
