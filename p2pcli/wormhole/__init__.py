"""Private shares with short codes (issue 18): the code format (`code`), the PAKE that
binds each side's DTLS fingerprint to the code (`pake`). Sans-IO; spake2 is imported only
by the module that runs the exchange."""
