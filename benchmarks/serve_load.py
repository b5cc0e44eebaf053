"""Load test for `tuneloop serve`: N concurrent chat clients vs the same requests one at a time.

Starts `tuneloop serve MODEL` as a separate process on 127.0.0.1 (or uses --url), then from this
process sends N chat requests concurrently and a sequential reference batch, and prints success
count, throughput and p50/p95 latency, with the concurrent/sequential throughput ratio.

    .venv/bin/python benchmarks/serve_load.py --model smollm2-135m-instruct --clients 32
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

TOPICS = ["the sea", "a red fox", "Paris", "bread", "rain", "a library", "chess", "mountains",
          "tea", "a bicycle", "the moon", "winter", "a garden", "music", "a river", "trains"]


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, max_batch: int) -> tuple[subprocess.Popen, str]:
    """Launch `tuneloop serve` and wait for /v1/models."""
    port = free_port()
    exe = str(Path(sys.executable).parent / "tuneloop")
    proc = subprocess.Popen([exe, "serve", model, "--port", str(port), "--model-name", "bench",
                             "--max-batch-size", str(max_batch)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start within 600 s")


async def one(client: httpx.AsyncClient, url: str, model: str, i: int, max_tokens: int,
              key: str | None) -> tuple[bool, float, int]:
    """One chat request; returns (ok, latency seconds, completion tokens)."""
    body = {"model": model, "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content":
                          f"Write one sentence about {TOPICS[i % len(TOPICS)]} (#{i})."}]}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    start = time.perf_counter()
    try:
        r = await client.post(url + "/v1/chat/completions", json=body, headers=headers)
        ok = r.status_code == 200
        tokens = r.json()["usage"]["completion_tokens"] if ok else 0
    except httpx.HTTPError:
        ok, tokens = False, 0
    return ok, time.perf_counter() - start, tokens


async def run(url: str, model: str, n: int, concurrency: int, max_tokens: int,
              key: str | None) -> dict:
    """Send n requests with at most `concurrency` in flight; summarise."""
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=1800, limits=limits) as client:

        async def guarded(i: int) -> tuple[bool, float, int]:
            async with sem:
                return await one(client, url, model, i, max_tokens, key)

        start = time.perf_counter()
        results = await asyncio.gather(*(guarded(i) for i in range(n)))
        wall = time.perf_counter() - start
    lat = sorted(r[1] for r in results if r[0])
    q = statistics.quantiles(lat, n=20, method="inclusive") if len(lat) >= 2 else lat * 19
    return {"n": n, "ok": sum(r[0] for r in results), "wall_s": wall,
            "req_per_s": sum(r[0] for r in results) / wall,
            "tok_per_s": sum(r[2] for r in results) / wall,
            "p50_s": statistics.median(lat) if lat else float("nan"),
            "p95_s": q[18] if lat else float("nan")}


def main() -> int:
    """Parse options, run the sequential reference and the concurrent load, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="model ref to serve")
    ap.add_argument("--url", default=None, help="use a running server (base URL without /v1)")
    ap.add_argument("--served-name", default="bench", help="model id when --url is given")
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients")
    ap.add_argument("--sequential", type=int, default=8, help="requests in the reference run")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-batch-size", type=int, default=16)
    args = ap.parse_args()
    key = os.environ.get("TUNELOOP_API_KEY")
    proc = None
    if args.url:
        url, name = args.url.rstrip("/"), args.served_name
    else:
        print(f"starting tuneloop serve {args.model} ...", flush=True)
        proc, url = start_server(args.model, args.max_batch_size)
        name = "bench"
    try:
        asyncio.run(run(url, name, 2, 1, 4, key))  # warm-up, not measured
        seq = asyncio.run(run(url, name, args.sequential, 1, args.max_tokens, key))
        conc = asyncio.run(run(url, name, args.clients, args.clients, args.max_tokens, key))
        health = httpx.get(url + "/health", timeout=10).json() if proc else {}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"\nmodel={args.model} max_tokens={args.max_tokens} "
          f"max_batch_size={args.max_batch_size} cpu_count={os.cpu_count()}")
    print(f"{'run':<24}{'ok/n':>8}{'wall s':>9}{'req/s':>8}{'tok/s':>8}{'p50 s':>8}"
          f"{'p95 s':>8}")
    for label, r in (("sequential (1 client)", seq), (f"concurrent ({args.clients})", conc)):
        print(f"{label:<24}{r['ok']:>4}/{r['n']:<3}{r['wall_s']:>9.2f}{r['req_per_s']:>8.2f}"
              f"{r['tok_per_s']:>8.1f}{r['p50_s']:>8.2f}{r['p95_s']:>8.2f}")
    ratio = conc["req_per_s"] / seq["req_per_s"] if seq["req_per_s"] else float("nan")
    print(f"throughput ratio concurrent/sequential: {ratio:.2f}x")
    if health:
        print(f"server batches: {health.get('batches_run')}, "
              f"largest batch: {health.get('max_batch_rows')} rows")
    all_ok = conc["ok"] == conc["n"] and seq["ok"] == seq["n"]
    print("ALL REQUESTS SUCCEEDED" if all_ok else "SOME REQUESTS FAILED")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
