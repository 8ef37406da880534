"""Errors a user can cause, each with an exit code and a sentence saying what to do.

The CLI catches `P2PError`, prints `p2p: <message>` as one line on stderr and exits with
`exit_code`. Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations


class ExitCode:
    """Documented process exit codes (README "Exit codes")."""

    OK = 0
    BUG = 1
    USAGE = 2  # bad arguments or input: malformed link, missing file, existing output
    NO_PEERS = 3  # nobody had the content within --timeout
    SIGNAL_UNREACHABLE = 4  # the signaling server could not be reached after --retries
    UNVERIFIABLE = 5  # manifest or pieces failed verification from every peer
    IO = 6  # the disk refused: unwritable output, disk full, file changed while seeding
    CHECK_FAILED = 7  # `p2p doctor`: a STUN/TURN server or the test connection failed
    WRONG_CODE = 8  # `receive` / `send`: the peer proved another code (issue 18)
    TAMPERED = 9  # `receive` / `send`: the code matched, the DTLS fingerprints did not (MITM)
    INTERRUPTED = 130  # Ctrl-C / SIGTERM; partial download kept for resume


class P2PError(Exception):
    """Base of every error a user can cause or fix."""

    exit_code: int = ExitCode.USAGE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(P2PError):
    exit_code = ExitCode.USAGE


class InvalidHash(UsageError):
    """The text given is not a content hash."""


class InvalidLink(UsageError):
    """The text given is not a p2p share link."""


class ManifestError(P2PError):
    """A manifest failed decoding or consistency checks."""

    exit_code = ExitCode.UNVERIFIABLE


class ManifestHashMismatch(ManifestError):
    """The manifest bytes do not hash to the requested content hash."""


class PieceHashMismatch(P2PError):
    """A piece's SHA-256 does not match the manifest."""

    exit_code = ExitCode.UNVERIFIABLE


class NoPeers(P2PError):
    exit_code = ExitCode.NO_PEERS


class SignalUnreachable(P2PError):
    exit_code = ExitCode.SIGNAL_UNREACHABLE


class Unverifiable(P2PError):
    exit_code = ExitCode.UNVERIFIABLE


class StorageError(P2PError):
    exit_code = ExitCode.IO


class Interrupted(P2PError):
    exit_code = ExitCode.INTERRUPTED
