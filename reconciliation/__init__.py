"""Roster reconciliation between each customer's SIS and Bookmarked (see README.md).

polars allocates through its own jemalloc, which by default keeps freed pages for 10 s
before giving them back. A run's steps free gigabytes between them (the SIS read, the
Bookmarked read, the rules), so a million-student run held 1.1 GiB it no longer used when
the rules began, and peaked 0.4 GiB higher for it. jemalloc reads this setting when it
starts, so it is set here, before any module of ours imports polars; a value already in
the environment wins.
"""

import os

os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
