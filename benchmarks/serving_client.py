"""Client headroom of the load generator: ``python benchmarks/serving_client.py [--out [DIR]] [--quick]``.

A null endpoint (a raw ASGI app under uvicorn answering every ``POST /v1/images/generations`` at once with a fixed
1x1 PNG) runs in a separate process, pinned to another core than the client when the machine has two. The open-loop
generator (:func:`t2ibench.harness.loadgen.run_level`, Poisson arrivals, the client pinned to one core) then offers
increasing rates, ``--seconds`` each. Per rate: the achieved rate (answers / (last answer − first scheduled send)),
the send lag (``sent_s − scheduled_s``: how late the client sends what it scheduled) p50/p99/max, the latency
p50/p99, errors, and the CPU time of the client and the server per second of wall. The headline: the highest offered
rate whose p99 send lag is under 5 ms with no error (issue 19's target: >= 500 requests/s on one core).
``--out`` writes ``serving-client-<tag>.json`` and ``.md`` into DIR (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RATES = (100, 200, 400, 600, 800, 1000, 1500, 2000, 3000)
QUICK_RATES = (100, 300)
LAG_TARGET_MS = 5.0
ROOT = Path(__file__).resolve().parent


# -- the null endpoint (its own process) ------------------------------------------------------------------
def _null_app():
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, format="PNG")
    body = json.dumps({"created": 0, "data": [{"b64_json": base64.b64encode(buf.getvalue()).decode()}]}).encode()
    start = {"type": "http.response.start", "status": 200,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         (b"server-timing", b"queue;dur=0, compute;dur=0, batch;desc=1")]}
    done = {"type": "http.response.body", "body": body}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send(start)
        await send(done)
    return app


def serve_null(port_file: str, cpu: int | None) -> None:
    import asyncio

    import uvicorn

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    config = uvicorn.Config(_null_app(), host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                            access_log=False, backlog=4096)
    server = uvicorn.Server(config)

    async def run():
        task = asyncio.ensure_future(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        tmp = Path(port_file + ".tmp")
        tmp.write_text(str(port))
        tmp.replace(port_file)
        await task
    asyncio.run(run())


def start_null(cpu: int | None) -> tuple[subprocess.Popen, str]:
    port_file = Path(tempfile.mkdtemp(prefix="null-endpoint-")) / "port"
    cmd = [sys.executable, __file__, "--serve-null", str(port_file)] + ([] if cpu is None else ["--cpu", str(cpu)])
    proc = subprocess.Popen(cmd)
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the null endpoint did not start")
        time.sleep(0.02)
    return proc, f"http://127.0.0.1:{port_file.read_text()}"


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the client ------------------------------------------------------------------------------------------------
def _pct(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else float("nan")


def one_rate(url: str, rate: float, seconds: float, server_pid: int) -> dict:
    from t2ibench.backends.http.client import ImageRequest
    from t2ibench.harness.loadgen import Planned, arrival_times, run_level

    n = max(1, int(rate * seconds))
    times = arrival_times(n, rate, "poisson", seed=0)
    request = ImageRequest("null", 8, 8, seed=0)
    planned = [Planned(i, request, "p0", 0, at) for i, at in enumerate(times)]
    usage0, server0 = resource.getrusage(resource.RUSAGE_SELF), _proc_cpu_s(server_pid)
    wall0 = time.perf_counter()
    result = run_level(url, planned, mode="open", timeout_s=10)
    wall = time.perf_counter() - wall0
    usage1, server1 = resource.getrusage(resource.RUSAGE_SELF), _proc_cpu_s(server_pid)
    records = result.records
    ok = [r for r in records if r.ok]
    lags = [(r.sent_s - r.scheduled_s) * 1000 for r in records if r.sent_s is not None]
    latencies = [r.latency_ms for r in ok]
    client_cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    last = max((r.done_s for r in ok), default=0.0)
    return {
        "offered_rate": rate, "requests": n, "ok": len(ok), "errors": len(records) - len(ok),
        "error_kinds": sorted({r.error_kind for r in records if r.error_kind}),
        "achieved_rate": len(ok) / (last - times[0]) if ok and last > times[0] else 0.0,
        "send_lag_ms_p50": _pct(lags, 50), "send_lag_ms_p99": _pct(lags, 99), "send_lag_ms_max": max(lags, default=0),
        "latency_ms_p50": _pct(latencies, 50), "latency_ms_p99": _pct(latencies, 99),
        "client_cpu_per_s": client_cpu / wall, "server_cpu_per_s": (server1 - server0) / wall, "wall_s": wall,
    }


def markdown(summary: dict, rows: list[dict]) -> str:
    lines = [f"# Load generator headroom ({summary['tag']})", "",
             f"`python benchmarks/serving_client.py{' --quick' if summary['quick'] else ''} --out`, "
             f"{summary['date']}. {summary['machine']}; Python {summary['python']}, aiohttp {summary['aiohttp']}, "
             f"uvicorn {summary['uvicorn']}. Client pinned to CPU {summary['client_cpu']}, null endpoint "
             f"(separate process) to CPU {summary['server_cpu']}. Poisson arrivals (seed 0), "
             f"{summary['seconds']:g} s per rate.", "",
             f"**Highest offered rate with p99 send lag < {LAG_TARGET_MS:g} ms and no error: "
             f"{summary['highest_rate_within_lag']} requests/s** (target: >= 500).", "",
             "| offered/s | achieved/s | ok | errors | send lag p50 ms | p99 ms | max ms | latency p50 ms | p99 ms "
             "| client CPU/s | server CPU/s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['offered_rate']:g} | {r['achieved_rate']:.0f} | {r['ok']} | {r['errors']} "
                     f"{','.join(r['error_kinds'])} | {r['send_lag_ms_p50']:.2f} | {r['send_lag_ms_p99']:.2f} | "
                     f"{r['send_lag_ms_max']:.1f} | {r['latency_ms_p50']:.2f} | {r['latency_ms_p99']:.2f} | "
                     f"{r['client_cpu_per_s']:.2f} | {r['server_cpu_per_s']:.2f} |")
    lines += ["", "Send lag: `sent_s - scheduled_s`, how late the client sent what it had scheduled (latency counts "
              "from the scheduled time, so a late client would inflate every figure). CPU/s: CPU seconds per second "
              "of wall (1.0 = one core saturated)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", help=f"offered rates (default {' '.join(map(str, RATES))})")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per rate (default 5)")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: rates {QUICK_RATES}, 2 s each")
    parser.add_argument("--out", nargs="?", const=str(ROOT / "results"), metavar="DIR",
                        help="write serving-client-<tag>.json and .md there (default: benchmarks/results)")
    parser.add_argument("--tag", default=f"cpu-{os.cpu_count()}core", help="the result files' machine tag")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the client and the endpoint to CPUs")
    parser.add_argument("--serve-null", metavar="PORT_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_null:
        return serve_null(args.serve_null, args.cpu)

    import aiohttp
    import uvicorn

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = not args.no_pin and len(cpus) >= 2
    client_cpu, server_cpu = (cpus[0], cpus[1]) if pin else (None, None)
    rates = QUICK_RATES if args.quick else tuple(args.rates or RATES)
    seconds = 2.0 if args.quick else args.seconds
    proc, url = start_null(server_cpu)
    try:
        if pin:
            os.sched_setaffinity(0, {client_cpu})
        one_rate(url, 100, 0.5, proc.pid)  # imports, connections, the server's first answers
        rows = []
        for rate in rates:
            row = one_rate(url, rate, seconds, proc.pid)
            rows.append(row)
            print(f"offered {rate:7g}/s  achieved {row['achieved_rate']:7.0f}/s  errors {row['errors']:4d}  "
                  f"send lag p50 {row['send_lag_ms_p50']:6.2f} p99 {row['send_lag_ms_p99']:7.2f} "
                  f"max {row['send_lag_ms_max']:7.1f} ms  client CPU {row['client_cpu_per_s']:.2f}/s  "
                  f"server CPU {row['server_cpu_per_s']:.2f}/s", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    passing = [r["offered_rate"] for r in rows if r["send_lag_ms_p99"] < LAG_TARGET_MS and not r["errors"]]
    summary = {
        "tag": args.tag, "quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(), "aiohttp": aiohttp.__version__, "uvicorn": uvicorn.__version__,
        "client_cpu": client_cpu, "server_cpu": server_cpu, "seconds": seconds,
        "highest_rate_within_lag": max(passing, default=None), "lag_target_ms": LAG_TARGET_MS,
    }
    print(f"highest offered rate with p99 send lag < {LAG_TARGET_MS:g} ms: {summary['highest_rate_within_lag']}/s")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = out / f"serving-client-{args.tag}"
        stem.with_suffix(".json").write_text(json.dumps({"summary": summary, "rates": rows}, indent=2) + "\n")
        stem.with_suffix(".md").write_text(markdown(summary, rows))
        print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
