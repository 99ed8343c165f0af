#!/usr/bin/python3
"""asyncpg-bench.py: the asyncpg peer of `pgev-bench --workload fanout --conns 1`.

    /usr/bin/python3 bench/peers/asyncpg-bench.py --host DIR_OR_HOST --port P --user U \
        --dbname D [--clients C] [--queries N] [--conns K]

C logical clients (default 1000) issue `SELECT $1::int4` back to back through an asyncpg pool of
K connections (default 1: the one-connection workload; asyncpg cannot pipeline, so the clients
take turns on it) until N queries (default 20000) completed. asyncpg prepares and caches the
statement itself. Every result is checked. Prints one key=value line as pgev-bench does.

asyncpg is not a dependency of pgev: Debian's python3-asyncpg provides it for /usr/bin/python3.
"""
import argparse
import asyncio
import resource
import sys
import time

import asyncpg


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=5432)
    ap.add_argument("--user", required=True)
    ap.add_argument("--dbname", required=True)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=20000)
    ap.add_argument("--conns", type=int, default=1)
    opts = ap.parse_args()
    if opts.clients < 1 or opts.queries < 1 or opts.conns < 1:
        ap.error("--clients, --queries and --conns need positive integers")

    pool = await asyncpg.create_pool(host=opts.host, port=opts.port, user=opts.user,
                                     database=opts.dbname, min_size=opts.conns,
                                     max_size=opts.conns)
    await pool.fetchval("SELECT 1")     # connected and warm before the clock starts

    latencies = [0.0] * opts.queries
    state = {"issued": 0, "done": 0, "wrong": 0}

    async def client():
        while state["issued"] < opts.queries:
            i = state["issued"]
            state["issued"] += 1
            value = i % 1000000
            t0 = time.perf_counter()
            got = await pool.fetchval("SELECT $1::int4", value)
            latencies[i] = (time.perf_counter() - t0) * 1e6
            if got != value:
                state["wrong"] += 1
            state["done"] += 1

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(min(opts.clients, opts.queries))))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    await pool.close()

    if state["wrong"]:
        print(f"asyncpg-bench: {state['wrong']} wrong results", file=sys.stderr)
        return 1
    done = state["done"]
    lat = sorted(latencies)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"asyncpg {asyncpg.__version__}, Python {sys.version.split()[0]}: {done} queries, "
          f"{opts.clients} clients, pool of {opts.conns}")
    print(f"workload=peer impl=asyncpg clients={opts.clients} conns={opts.conns} queries={done} "
          f"qps={done / wall:.0f} p50_us={percentile(lat, 0.5):.1f} p99_us={percentile(lat, 0.99):.1f} "
          f"cpu_pct={cpu / wall * 100:.1f} rss_kb={rss_kb} errors=0")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
