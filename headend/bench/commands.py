"""The one place that registers the benchmarks as `loaxa bench ...` and runs them.

Light to import: each benchmark's module is imported only for a `bench` command line (some take
half a second to import), so every other `loaxa` command starts as fast as before."""

from __future__ import annotations

import argparse
import asyncio

from headend.bench.common import positive_int


def add_bench_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                      every: bool) -> None:
    """`loaxa bench BENCH`; every: also the benchmarks whose modules are slow to import."""
    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    fan = bench_sub.add_parser("fanout", help="signed play fan-out to N nodes, acked")
    fan.add_argument("--nodes", type=positive_int, default=2000)
    fan.add_argument("--rounds", type=positive_int, default=7)
    fan.add_argument("--per-process", type=positive_int, default=100,
                     help="simulated nodes per MicroPython process (default 100)")
    fan.add_argument("--op", choices=("play", "emergency"), default="play",
                     help="play: until all acked; emergency: until all nodes are playing")
    plan = bench_sub.add_parser("plan", help="expand a year of plans for a province")
    plan.add_argument("--communes", type=positive_int, default=65)
    plan.add_argument("--nodes", type=positive_int, default=25, help="nodes per commune")
    plan.add_argument("--days", type=positive_int, default=365)
    plan.add_argument("--rounds", type=positive_int, default=5)
    start = bench_sub.add_parser(
        "start", help="how late audio starts against the plan, over a simulated day")
    start.add_argument("--nodes", type=positive_int, default=100)
    start.add_argument("--rate", type=positive_int, default=200,
                       help="simulated seconds per real second (default 200)")
    if every:
        from headend.bench import diary, ingest, node_day, web

        ingest.add_parser(bench_sub)
        diary.add_parser(bench_sub)
        web.add_parser(bench_sub)
        node_day.add_parser(bench_sub)


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark args.bench names; its exit code."""
    if args.bench == "plan":
        from headend.bench.plan import run_plan

        run_plan(args.communes, args.nodes, args.days, args.rounds)
    elif args.bench == "start":
        from headend.bench.start import run_start

        run_start(args.nodes, args.rate)
    elif args.bench == "ingest":
        from headend.bench.ingest import run_ingest

        return run_ingest(args)
    elif args.bench == "diary":
        from headend.bench.diary import run_diary

        return run_diary(args)
    elif args.bench == "node-day":
        from headend.bench.node_day import run_node_day

        return run_node_day(args)
    elif args.bench == "web":
        from headend.bench.web import run_web

        return run_web(args)
    else:
        from headend.bench.fanout import run_fanout

        asyncio.run(run_fanout(args.nodes, args.rounds, args.per_process, op=args.op))
    return 0
