"""The `p2p` command line: argument parsing and rendering only; the work is in p2pcli."""
