"""Run a command's coroutine: uvloop when installed, Ctrl-C and SIGTERM become `Interrupted`."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .errors import Interrupted

T = TypeVar("T")


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # optional: ~40% less CPU per byte through aiortc here
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main: Callable[[], Awaitable[T]], interrupted_message: str = "interrupted") -> T:
    """Run `main()` to completion; a signal cancels it and raises `Interrupted` (unless
    `main` handles the cancellation and returns)."""
    loop = new_loop()
    asyncio.set_event_loop(loop)
    got_signal: list[int] = []
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    async def wrapper() -> T:
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):

            def on_signal(sig: int = sig) -> None:
                # The first signal stops the command; it then cleans up (a finished stream
                # still exits 0). A second one, often a double Ctrl-C, must not cut that
                # short into "interrupted": it is ignored. A third forces the stop.
                got_signal.append(sig)
                if len(got_signal) != 2:
                    task.cancel()

            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, on_signal)
        return await main()

    try:
        return loop.run_until_complete(wrapper())
    except asyncio.CancelledError:
        if got_signal:
            raise Interrupted(interrupted_message) from None
        raise
    finally:
        with contextlib.suppress(Exception):
            _cancel_all(loop)
        loop.run_until_complete(loop.shutdown_asyncgens())
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_default_executor())
        asyncio.set_event_loop(None)
        loop.close()
        _after_loop(before, stopping=bool(got_signal))


def _after_loop(before: dict, *, stopping: bool) -> None:
    """Signal handling once the loop is closed (closing it drops the loop's handlers; uvloop
    leaves SIGINT at SIG_DFL, so a second Ctrl-C killed the process silently with 130 after
    it had printed `done`). Stopping on a signal already: further ones are ignored, the
    process is only writing its last line. Otherwise the handlers from before come back."""
    for sig, handler in before.items():
        with contextlib.suppress(ValueError, OSError, TypeError):  # not the main thread
            signal.signal(sig, signal.SIG_IGN if stopping else handler)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
