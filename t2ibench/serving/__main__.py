"""``python -m t2ibench.serving --config-json FILE [--port-file F] [--device D] [--parent-pid PID]``: serve one
resolved config.

The entry ``endpoint: self`` starts in a subprocess. FILE holds ``{"model", "name", "knobs": {flat knobs},
"timing": {...}, "trust_remote_code": bool, "serve": {ServeOptions fields}}``. A bad file: one line on stderr,
exit 2. The API key may also come from ``$T2IBENCH_API_KEY`` (so that it never sits in a file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from t2ibench.errors import UserError


def _load(path: str):
    from pydantic import ValidationError

    from t2ibench.serving import ServeOptions
    from t2ibench.suites import Config, Timing

    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise UserError(f"--config-json {path}: {e.strerror}") from None
    except ValueError as e:
        raise UserError(f"--config-json {path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not {"model", "knobs"} <= data.keys():
        raise UserError(f"--config-json {path}: needs an object with 'model' and 'knobs'")
    unknown = sorted(set(data) - {"model", "name", "knobs", "timing", "trust_remote_code", "serve"})
    if unknown:
        raise UserError(f"--config-json {path}: unknown keys {', '.join(unknown)}")
    try:
        config = Config.model_validate({"name": data.get("name") or "served", "model": data["model"],
                                        "knobs": data["knobs"]})
        timing = Timing.model_validate(data.get("timing") or {})
        serve = dict(data.get("serve") or {})
        if serve.get("api_key") is None and os.environ.get("T2IBENCH_API_KEY"):
            serve["api_key"] = os.environ["T2IBENCH_API_KEY"]
        options = ServeOptions.model_validate(serve)
    except ValidationError as e:
        err = e.errors()[0]
        raise UserError(f"--config-json {path}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
    return config, timing, options, bool(data.get("trust_remote_code", False))


def _watch_parent(pid: int) -> None:
    """SIGTERM this server once ``pid`` has exited (its parent-death signal covers Linux; this covers the rest)."""
    import signal
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != pid:  # re-parented: the run that started this server is gone
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="t2ibench-parent-watch", daemon=True).start()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t2ibench.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--config-json", required=True, metavar="FILE")
    parser.add_argument("--port-file", metavar="F", help="written (atomically) with the port once /health is 200")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--parent-pid", type=int, metavar="PID",
                        help="stop (as on SIGTERM) when this process is gone: the run that started this server")
    args = parser.parse_args(argv)
    if args.parent_pid:
        _watch_parent(args.parent_pid)
    try:
        config, timing, options, trust = _load(args.config_json)
        from t2ibench.serving import serve

        return serve(config, device=args.device, options=options, timing=timing, trust_remote_code=trust,
                     port_file=Path(args.port_file) if args.port_file else None,
                     log=lambda line: print(line, file=sys.stderr, flush=True))
    except UserError as e:
        if args.debug:
            raise
        for line in e.problems:
            print(f"t2ibench: error: {line}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
