"""The ``t2ibench`` command line. User errors print one line each on stderr and exit 2."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from t2ibench.base import plural
from t2ibench.errors import DiskFullError, RunInterrupted, UserError, disk_full

EPILOG = """examples:
  t2ibench run                                   # builtin 'smoke' suite on random:tiny-sd, CPU, < 1 min
  t2ibench run my-suite.yaml --out runs/sdxl     # rerun the same command to resume
  t2ibench run sdxl-deploy --device cuda --fresh
  t2ibench validate suites/*.yaml
  t2ibench report runs/sdxl --format csv,md
  t2ibench export runs/sdxl -o baseline.json     # a baseline to commit
  t2ibench compare baseline.json runs/new        # exit 1 on a significant regression beyond its gate
  t2ibench score fid images/a images/b --features inception
  t2ibench serve smoke --config 'scheduler=euler steps=2'   # one config over the OpenAI Images API
  t2ibench suites
  t2ibench doctor
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="t2ibench", description="Benchmark text-to-image diffusion pipelines for speed and quality.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--version", action="version", version=f"t2ibench {_version()}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")

    raw = argparse.RawDescriptionHelpFormatter  # descriptions are wrapped by _about, examples kept as written
    p = verbs.add_parser("run", help="generate, time and score a suite (resumable)", formatter_class=raw,
                         description=_about("Generate every image of a suite (configs × prompts × seeds), time it, "
                                            "score its metrics and write the reports. Rerunning the same command "
                                            "resumes."),
                         epilog="examples:\n"
                                "  t2ibench run                          # builtin smoke suite, random:tiny-sd\n"
                                "  t2ibench run suite.yaml --out runs/x --device cuda\n"
                                "  t2ibench run suite.yaml --executor ray --executor-opt address=auto\n"
                                "  t2ibench run suite.yaml --baseline baseline.json   # exit 1 on a regression")
    p.add_argument("suite", nargs="?", default="smoke", metavar="SUITE",
                   help="suite YAML path or builtin name (default: smoke; see: t2ibench suites)")
    p.add_argument("--out", metavar="DIR", help="run directory (default: t2ibench-runs/<suite>-<UTC time>, "
                                                "or the latest unfinished run of the same suite)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto: cuda when found)")
    p.add_argument("--executor", default=None, metavar="NAME",
                   help="how cells are distributed: local | ray (default: the suite's executor:, else local)")
    p.add_argument("--executor-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="an executor option, e.g. address=auto, max_actors=8, cpus_per_actor=2, "
                        "share_gpus=true (repeatable)")
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    p.add_argument("--no-metrics", action="store_true", help="skip quality metrics (timing and images only)")
    p.add_argument("--profile", action="store_true",
                   help="trace one more, untimed call of each config with the engine's profiler "
                        "(profiles/<config_id>.json.gz; its top operators in the report)")
    p.add_argument("--verbose", action="store_true",
                   help="also show other packages' warnings and log lines on the terminal "
                        "(they always go to run.log in the run directory)")
    p.add_argument("--baseline", metavar="DIR", help="then compare with this run directory or results.json "
                                                    "(exit 1 on regression)")
    p.set_defaults(func=_run)

    p = verbs.add_parser("report", help="(re)write reports from a run's store", formatter_class=raw,
                         description=_about("Write a run's reports again from its store (run.sqlite), e.g. with "
                                            "other objectives; no image is generated."),
                         epilog="examples:\n  t2ibench report runs/sdxl\n"
                                "  t2ibench report runs/sdxl --format csv,md --objectives latency_ms_p50=min")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (what run --out wrote)")
    p.add_argument("--format", default="html,md,csv,latex",
                   help="comma-separated: html, md, csv, latex (default: all four)")
    p.add_argument("--objectives", metavar="NAME=min|max,...",
                   help="override the suite's objectives, e.g. latency_ms_p50=min,clip_score=max")
    p.set_defaults(func=_report)

    p = verbs.add_parser("validate", help="check suite files: the schema, then everything that can be checked "
                                          "without generating (files, metric networks, skipped combinations)",
                         formatter_class=raw,
                         description=_about("Check suite files without generating anything: the schema, then LoRA "
                                            "files, metric networks, reference folders and .npz files, too few "
                                            "images for a metric, and configs that would always be skipped. Every "
                                            "problem with its file:line, all at once (exit 2); skips are warnings."),
                         epilog="examples:\n  t2ibench validate my-suite.yaml\n  t2ibench validate suites/*.yaml")
    p.add_argument("suites", nargs="+", metavar="SUITE", help="suite YAML paths or builtin names")
    p.set_defaults(func=_validate)

    p = verbs.add_parser("suites", help="list the builtin suites", formatter_class=raw,
                         description=_about("List the builtin suites: name, model and description."),
                         epilog="examples:\n  t2ibench suites\n  t2ibench run sdxl-deploy --device cuda")
    p.set_defaults(func=_suites)

    p = verbs.add_parser("doctor", help="show torch/CUDA/GPU, attention backends and metric weights found",
                         formatter_class=raw,
                         description=_about("Show what this machine can run: torch, CUDA and GPU, attention "
                                            "backends, optional packages and the metric weights found (never "
                                            "downloads)."),
                         epilog="examples:\n  t2ibench doctor")
    p.set_defaults(func=_doctor)

    p = verbs.add_parser("serve", help="serve one config of a suite over the OpenAI Images API (t2ibench[serve])",
                         formatter_class=raw,
                         description=_about("Serve one config of a suite over HTTP, through the same engine, knobs "
                                            "and warm-up that `run` uses: POST /v1/images/generations (OpenAI Images "
                                            "API, plus seed, num_inference_steps, guidance_scale, negative_prompt), "
                                            "GET /health (503 until warm), /v1/models and /metrics (Prometheus). "
                                            "Compatible requests are batched; a full queue answers 503. Ctrl-C or "
                                            "SIGTERM stops accepting, finishes the queued requests, and exits 0. "
                                            "Binds 127.0.0.1 unless --host says otherwise."),
                         epilog="examples:\n"
                                "  t2ibench serve smoke --config 'scheduler=euler steps=2'\n"
                                "  T2IBENCH_API_KEY=secret t2ibench serve suite.yaml --config fast --port 9000 "
                                "--max-batch-size 4 --max-wait-ms 50\n"
                                "  curl -s localhost:8000/v1/images/generations -d '{\"prompt\": \"a cat\", "
                                "\"seed\": 0}'")
    p.add_argument("suite", metavar="SUITE", help="suite YAML path or builtin name")
    p.add_argument("--config", required=True, metavar="NAME",
                   help="the config to serve: its name (as in results.csv) or config_id")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0: any free port)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto: cuda when found)")
    p.add_argument("--api-key", metavar="K", help="require 'Authorization: Bearer K' on /v1/* "
                                                  "(default: $T2IBENCH_API_KEY; unset: no key)")
    p.add_argument("--max-batch-size", type=int, metavar="N",
                   help="images of compatible requests per pipeline call (default: the config's scenario, else 1)")
    p.add_argument("--max-wait-ms", type=float, metavar="MS",
                   help="how long a batch waits to fill (default: the config's scenario, else 0)")
    p.add_argument("--max-queue", type=int, metavar="N",
                   help="queued requests before 503 + Retry-After (default: the config's scenario, else 64)")
    p.add_argument("--request-timeout-s", type=float, metavar="S", help="per request, then 504 (default: 600)")
    p.add_argument("--drain-timeout-s", type=float, metavar="S",
                   help="on Ctrl-C/SIGTERM, how long queued requests may take to finish (default: 30)")
    p.add_argument("--inexact-batches", action="store_true",
                   help="batch even where a batched image differs from its lone image in the last bits "
                        "(by default such batches run one image per call)")
    p.set_defaults(func=_serve)

    from t2ibench.metrics.cli import add_score_parser

    add_score_parser(verbs)
    from t2ibench.reports.compare_cli import add_compare_parsers

    add_compare_parsers(verbs)
    return parser


def _about(text: str) -> str:
    """A verb's description wrapped to 78 columns (RawDescriptionHelpFormatter prints it as given)."""
    import textwrap

    return textwrap.fill(text, 78)


def _version() -> str:
    import t2ibench

    return t2ibench.__version__


def _console(stderr: bool = False):
    import io
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty() if isinstance(stream, io.TextIOBase) or hasattr(stream, "isatty") else False
    return Console(stderr=stderr, highlight=False, width=None if tty else 160)


def _run(args) -> int:
    from t2ibench.executors import parse_cli_options
    from t2ibench.orchestration import Run, RunUserError, execute
    from t2ibench.progress import RichObserver
    from t2ibench.runlog import ThirdPartyLog
    from t2ibench.suites import load_suite, suite_notes

    suite = load_suite(args.suite)
    for note in suite_notes(suite):
        print(f"note: {note}", file=sys.stderr)
    if args.baseline:  # a bad baseline is a user error before any work
        from t2ibench.reports.export import load_summary

        baseline = load_summary(args.baseline)
    executor_options = parse_cli_options(args.executor_opt)
    try:
        with ThirdPartyLog(verbose=args.verbose) as runlog:  # other packages' output → run.log
            err = _console(stderr=True)
            with RichObserver(err) as observer:
                run = execute(suite, out=args.out, device=args.device, executor=args.executor,
                              executor_options=executor_options, fresh=args.fresh,
                              observer=observer, metrics=not args.no_metrics, profile=args.profile,
                              log=lambda msg: observer.progress.console.print(msg, markup=False),
                              on_run_dir=runlog.attach)
    except RunInterrupted as e:
        print(f"t2ibench: {e}; to resume, run: {_resume_command(args, e.run_dir)}", file=sys.stderr)
        return 130
    except RunUserError as e:  # found after generation: the summary of what ran, then the errors (exit 2)
        run = Run(e.run_dir)
        _print_summary(run)
        if run.n_failed:
            _print_failures(run, err)
        raise
    _print_summary(run)
    failed = run.n_failed
    if failed:
        _print_failures(run, err)
        err.print(f"[red]{plural(failed, 'cell')} failed[/red]; see {run.run_dir / 'cells.csv'} (rerun to retry them)")
    if args.baseline:
        from t2ibench.reports.compare_cli import check_baseline

        return max(check_baseline(baseline, run.run_dir), 1 if failed else 0)
    return 1 if failed else 0


def _resume_command(args, run_dir) -> str:
    """The command that resumes an interrupted run: the user's, with --out and without --fresh."""
    import shlex

    words = ["t2ibench", "run", args.suite, "--out", str(run_dir)]
    if args.device != "auto":
        words += ["--device", args.device]
    if args.executor:
        words += ["--executor", args.executor]
    for option in args.executor_opt:
        words += ["--executor-opt", option]
    if args.no_metrics:
        words.append("--no-metrics")
    if args.profile:
        words.append("--profile")
    if args.baseline:
        words += ["--baseline", args.baseline]
    return shlex.join(words)


def _print_failures(run, console) -> None:
    """One line per config with failed cells: how many, the commonest error, and why the rest was skipped."""
    from rich.markup import escape

    cells = run.cells()
    reasons = run.results().set_index("config_id")
    for config_id, mine in cells.groupby("config_id", sort=False):
        failed = mine[mine["status"] == "failed"]
        if not len(failed):
            continue
        errors = failed["error"].value_counts()
        line = (f"{mine['config'].iloc[0]} ({config_id}): {len(failed)} of {plural(len(mine), 'cell')} failed, "
                f"{errors.index[0]}" + (f" (and {len(errors) - 1} other errors)" if len(errors) > 1 else ""))
        skipped = int((mine["status"] == "skipped").sum())
        if skipped and config_id in reasons.index:
            line += f"; {plural(skipped, 'cell')} {reasons.loc[config_id, 'reason']}"
        console.print(f"[red]failed:[/red] {escape(line)}")


def _print_summary(run) -> None:
    from rich.markup import escape

    from t2ibench.reports.summary import stability_note, summary_table

    results = run.results()
    metric_cols = [c[:-3] for c in results.columns if c.endswith("_lo")]
    if "cache_hit_rate" in results and results["cache_hit_rate"].notna().any():
        metric_cols.append("cache_hit_rate")  # shown like a metric: how much a step cache skipped
    if "upscale_ms_mean" in results and results["upscale_ms_mean"].notna().any():
        metric_cols.append("upscale_ms_mean")  # the upscale stage's part of the latency
    console = _console()
    table, dropped = summary_table(results.to_dict("records"), metric_cols, console.width, f"results: {run.run_dir}")
    console.print(table)
    if dropped:
        console.print(f"[dim]not shown (terminal too narrow): {', '.join(dropped)}; all columns in results.csv[/dim]")
    unstable = stability_note(results.to_dict("records"))
    if unstable:
        console.print(f"[yellow]{escape(unstable)}[/yellow]")
    from t2ibench.reports.serving import slo_lines

    for line in slo_lines(results.to_dict("records")):  # load levels: the highest rate within each family's SLO
        console.print(f"serving: {escape(line)}")
    random_cols = sorted({m for v in results.get("random_weights", []) for m in str(v).split(",") if m})
    if random_cols:
        console.print(f"[yellow]{', '.join(random_cols)}: random weights, values not meaningful[/yellow]")
    for _, r in results[results["recompiles"] > 0].iterrows():
        console.print(f"[yellow]{r['config']}: recompiled {r['recompiles']}× during timed calls; its latency "
                      "includes compilation[/yellow]")
    _print_actors(run, console)
    _print_recommendation(run, console)
    from t2ibench.reports.mlperf import verdicts

    for verdict in verdicts(run.suite, results.to_dict("records")):
        colour = "green" if verdict.passed else "red"
        head, *rest = verdict.lines()
        console.print(f"[{colour}]{escape(head)}[/{colour}]")
        for line in rest:
            console.print(escape(line))
    console.print(f"report: {run.report_path}")
    log = run.run_dir / "run.log"
    if log.exists() and log.stat().st_size:
        console.print(f"[dim]other packages' warnings and log lines: {log} (--verbose shows them)[/dim]")


def _print_recommendation(run, console) -> None:
    from rich.markup import escape

    from t2ibench.reports.summary import recommendation_lines

    for line in recommendation_lines(run.recommendation(), console.width):
        console.print(f"[bold]{escape(line)}[/bold]")


def _print_actors(run, console) -> None:
    """Images per actor of a Ray run, with the node and GPU each ran on."""
    from rich.markup import escape

    executor = run.executor()
    actors = executor["actors"]
    sessions = len({a["session"] for a in actors})
    for a in actors:
        where = f"session {a['session']}, " if sessions > 1 else ""
        died = f" (died: {a['died']})" if a.get("died") else ""
        console.print(escape(f"{where}actor {a['actor']} on {a.get('hostname', '?')} ({a.get('node_ip', '?')}, "
                             f"{a.get('gpu', '?')}): {plural(a['images'], 'image')}{died}"))
    if executor.get("share_gpus") and actors:
        console.print("[yellow]share_gpus: two actors per GPU; latency is not comparable with a single-tenant "
                      "run[/yellow]")


def _report(args) -> int:
    from t2ibench.store import RunStore
    from t2ibench.reports import write_reports

    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    objectives = _parse_objectives(args.objectives) if args.objectives else None
    with RunStore.open(args.run_dir) as store:
        written = write_reports(store, formats, objectives)
    for path in written.values():
        print(path)
    return 0


def _parse_objectives(text: str) -> dict[str, str]:
    objectives = {}
    for part in text.split(","):
        name, _, direction = part.strip().partition("=")
        if direction not in ("min", "max") or not name:
            raise UserError(f"--objectives: '{part.strip()}' must look like NAME=min or NAME=max")
        objectives[name] = direction
    return objectives


def _validate(args) -> int:
    from t2ibench.orchestration import check_models
    from t2ibench.suites import load_suite, suite_notes
    from t2ibench.suites.preflight import preflight

    problems: list[str] = []
    for path in args.suites:
        try:
            suite = load_suite(path)
            check_models(suite)
            found = preflight(suite)  # names, files and combinations; the weights are looked up by `run`
            if found.errors or found.few_images:  # the errors alone: the warnings follow once they are fixed
                problems.extend(found.errors + found.few_images)
                continue
            for line in found.skips:  # always skipped: said, but not an error
                print(f"t2ibench: warning: {line}", file=sys.stderr)
            warned = f"; {plural(len(found.skips), 'warning')}" if found.skips else ""
            print(f"{path}: ok ({plural(len(suite.configs()), 'config')} × "
                  f"{plural(len(suite.prompt_list()), 'prompt')} × {plural(len(suite.seed_list()), 'seed')}{warned})")
            for note in suite_notes(suite):
                print(f"{path}: note: {note}")
        except UserError as e:
            problems.extend(e.problems)
    if problems:
        raise UserError(problems[0], problems=problems)
    return 0


def _serve(args) -> int:
    import os

    from pydantic import ValidationError

    from t2ibench.serving import INSTALL_HINT, ServeOptions, missing_packages, serve
    from t2ibench.suites import load_suite
    from t2ibench.suites.scenario import is_load

    missing = missing_packages()
    if missing:
        raise UserError(f"t2ibench serve needs {', '.join(missing)}: {INSTALL_HINT}")
    suite = load_suite(args.suite)
    configs = suite.configs()
    config = next((c for c in configs if args.config in (c.name, c.config_id)), None)
    if config is None:
        names = [c.name for c in configs]
        shown = ", ".join(repr(n) for n in names[:20]) + (f", … ({len(names) - 20} more)" if len(names) > 20 else "")
        raise UserError(f"--config: suite '{suite.name}' has no config '{args.config}'; its configs: {shown}")
    scenario = config.knobs.scenario
    from_scenario = ({k: getattr(scenario, k) for k in ("max_batch_size", "max_wait_ms", "max_queue", "exact_batches")}
                     if is_load(scenario) else {})
    given = {"max_batch_size": args.max_batch_size, "max_wait_ms": args.max_wait_ms, "max_queue": args.max_queue,
             "request_timeout_s": args.request_timeout_s, "drain_timeout_s": args.drain_timeout_s,
             "exact_batches": False if args.inexact_batches else None}
    try:
        options = ServeOptions(host=args.host, port=args.port, api_key=args.api_key or os.environ.get(
            "T2IBENCH_API_KEY") or None, **{**from_scenario, **{k: v for k, v in given.items() if v is not None}})
    except ValidationError as e:
        err = e.errors()[0]
        raise UserError(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None
    return serve(config, device=args.device, options=options, timing=suite.timing,
                 trust_remote_code=suite.trust_remote_code, log=lambda line: print(line, flush=True))


def _suites(args) -> int:
    from t2ibench.suites import builtin_suites, load_suite

    for name, path in sorted(builtin_suites().items()):
        suite = load_suite(path)
        print(f"{name:16} {suite.model:45} {suite.description}")
    return 0


def _doctor(args) -> int:
    from t2ibench.doctor import report

    for line in report():
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        if args.debug:
            raise
        for line in e.problems:
            print(f"t2ibench: error: {line}", file=sys.stderr)
        return e.exit_code
    except DiskFullError as e:
        if args.debug:
            raise
        print(f"t2ibench: error: {e}", file=sys.stderr)
        return e.exit_code
    except Exception as e:  # a full disk met outside a run (report, score); anything else is a bug
        full = disk_full(e, getattr(e, "filename", None) or ".")
        if full is None or args.debug:
            raise
        print(f"t2ibench: error: {full}", file=sys.stderr)
        return full.exit_code
    except KeyboardInterrupt:
        print("t2ibench: interrupted; finished cells are saved, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
