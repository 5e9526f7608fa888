"""How close the OneRoster API client gets to the network's limit.

Serves N users (default 100,000) from the local OneRoster test server, in its own
process so the server's work does not compete with the client for one GIL, with a fixed
latency added to every request (default 20 ms). Reads them through the connector's
client (OAuth 1.0a HMAC-SHA256 signed, paged, concurrent) and prints:

- wall time of the read,
- the ideal: pages x latency / concurrency (what perfect overlap of the waits costs),
- their ratio (target: at most 1.5),
- the request count (client and server side),
- then the same for a whole `fetch_roster()` (the read plus the mapping to the canonical
  roster), for a sense of the mapping's share.

Run from the project root:  .venv/bin/python benchmarks/oneroster_api_bench.py
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from reconciliation.audit import AuditLog  # noqa: E402
from reconciliation.connectors.oneroster_api import OneRosterApiConnector  # noqa: E402
from reconciliation.credentials import CredentialResolver  # noqa: E402
from reconciliation.settings import CustomerSettings  # noqa: E402


def serve(
    users: int,
    latency: float,
    port_out: multiprocessing.Queue,
    stop: multiprocessing.Event,
    counts: multiprocessing.Queue,
) -> None:
    """The server process: build the district, serve until told to stop, report its counts."""
    from reconciliation_tests.fixtures.oneroster_server import OneRosterServer, generated_dataset

    server = OneRosterServer(datasets=generated_dataset(users))
    server.prerender()
    server.latency = latency
    server.start()
    cpu_at_start = time.process_time()
    port_out.put(server.url)
    stop.wait()
    counts.put(
        {
            "requests": len(server.resource_requests()),
            "max_in_flight": server.max_in_flight,
            "cpu": time.process_time() - cpu_at_start,
        }
    )
    server.stop()


def connector(base_url: str, page_size: int, concurrency: int) -> OneRosterApiConnector:
    source = {
        "type": "oneroster_api",
        "base_url": base_url,
        "auth": {"method": "oauth1", "consumer_key": "env:KEY", "consumer_secret": "env:SECRET"},
        "page_size": page_size,
        "concurrency": concurrency,
    }
    settings = CustomerSettings(
        "bench",
        "Bench",
        "staging",
        {"customer_id": 1},
        source,
        PROJECT_ROOT / "benchmarks" / "bench.json",
    )
    credentials = CredentialResolver({"KEY": "test-key", "SECRET": "test-secret"})
    return OneRosterApiConnector(settings, credentials, AuditLog(None))


def read_users(base_url: str, args: argparse.Namespace) -> tuple[float, float, int]:
    """One timed read of the users collection: wall seconds, client CPU seconds, requests."""
    reader = connector(base_url, args.page_size, args.concurrency)
    reader.test_connection()  # authenticate and open a connection outside the timing
    before = reader.client.stats.requests
    started, cpu_started = time.perf_counter(), time.process_time()
    users = reader.client.read_collection("users", "users")
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    assert len(users) == args.users, len(users)
    return wall, cpu, reader.client.stats.requests - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.020, help="seconds added per request")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="timed reads (best and median shown)")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    port_out, counts, stop = context.Queue(), context.Queue(), context.Event()
    process = context.Process(target=serve, args=(args.users, args.latency, port_out, stop, counts))
    process.start()
    try:
        base_url = f"{port_out.get(timeout=120)}/ims/oneroster/v1p1"
        runs = sorted(read_users(base_url, args) for _ in range(args.repeat))
        best, median = runs[0], runs[len(runs) // 2]
        pages = math.ceil(args.users / args.page_size)
        ideal = pages * args.latency / args.concurrency
        print(
            f"users read          {args.users:,} ({pages} pages of {args.page_size}, "
            f"concurrency {args.concurrency}, {args.latency * 1000:.0f} ms per request), "
            f"{args.repeat} runs"
        )
        print(f"wall time           best {best[0]:.2f} s, median {median[0]:.2f} s")
        print(f"ideal               {ideal:.2f} s  (pages x latency / concurrency)")
        print(
            f"ratio               best {best[0] / ideal:.2f}x, median {median[0] / ideal:.2f}x"
            "  (target <= 1.5x)"
        )
        print(
            f"client CPU          {median[1]:.2f} s per read (load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
        )
        print(f"requests (client)   {median[2]} per read")

        whole = connector(base_url, args.page_size, args.concurrency)
        started = time.perf_counter()
        roster = whole.fetch_roster()
        full = time.perf_counter() - started
        print(
            f"fetch_roster()      {full:.2f} s for {roster.users.height:,} users "
            f"({roster.meta['http']['requests']} requests, mapping included)"
        )
    finally:
        stop.set()
        served = counts.get(timeout=30)
        process.join(timeout=30)
    print(
        f"requests (server)   {served['requests']} in all, at most {served['max_in_flight']} "
        f"at once; server CPU {served['cpu']:.2f} s"
    )


if __name__ == "__main__":
    main()
