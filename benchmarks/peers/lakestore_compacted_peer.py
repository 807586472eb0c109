"""lakestore after ``lakestore.compact``: the search scenario only.

The store is built as ``lakestore_peer`` builds it, then compacted (``lakestore.compact``,
``grace=0``: no query is running), as a user does with ``lakestore compact`` once runs have
ended: each table of the experiment becomes one part instead of a file per run (about 4,000
files for 1,000 runs). The search and the history are ``lakestore_peer``'s.
"""

from __future__ import annotations

import os
from typing import Any

from peers import lakestore_peer

PACKAGE = "lakestore"
count = lakestore_peer.count
search = lakestore_peer.search


def build(folder: str, n: int) -> dict[str, Any]:
    import lakestore

    built = lakestore_peer.build(folder, n)
    lakestore.compact(os.path.join(folder, lakestore_peer.STORE), grace=0)
    return built
