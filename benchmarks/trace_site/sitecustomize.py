"""On PYTHONPATH with P2P_SCTP_TRACE set: trace SCTP in every Python process (sctp_trace.py)."""

import os
import sys

if os.environ.get("P2P_SCTP_TRACE"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        import sctp_trace

        sctp_trace.install()
    except ImportError:
        pass
