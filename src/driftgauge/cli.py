"""The ``driftgauge`` command: demo, init, baseline (and baseline merge), serve, check, inspect, rules.

Every user error ends as one line on stderr and a non-zero exit code
(2 config, 3 baseline, 4 data, 1 other), never a traceback.  Ctrl-C ends a
command with 130; SIGTERM ends ``baseline`` as Ctrl-C does, with 143; a reader of
its output that leaves (``| head``) ends it quietly with 141, as SIGPIPE would.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import shlex
import signal
import sys
from collections.abc import Callable, Sequence, Sized
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from driftgauge import __version__
from driftgauge.config import Config, ProtocolName, load_config
from driftgauge.exceptions import BaselineError, ConfigError, DataError, DriftgaugeError
from driftgauge.runtime import loops
from driftgauge.runtime.logs import configure_logging
from driftgauge.runtime.loops import LOOP_CHOICES
from driftgauge.runtime.sigterm import Terminated, sigterm_raises

if TYPE_CHECKING:
    from driftgauge.baseline import Baseline

Progress = Callable[[str, int, int], None]

__all__ = ["main"]

log = logging.getLogger("driftgauge")


def _add_log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default=None,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: the config's log.level, else INFO",
    )
    parser.add_argument(
        "--log-format",
        default=None,
        choices=["text", "json"],
        help="default: the config's log.format, else text",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftgauge",
        description="Prometheus-native ML model monitoring sidecar.",
    )
    parser.add_argument("--version", action="version", version=f"driftgauge {__version__}")
    _add_log_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run a model server, the sidecar and drifting traffic")
    demo.add_argument(
        "--duration",
        type=_seconds,
        default=60.0,
        help="seconds; 0 runs until Ctrl-C (default 60)",
    )
    demo.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        help="default: the standard port, else a free one",
    )
    demo.add_argument("--seed", type=int, default=7)

    init = commands.add_parser(
        "init",
        help="write a starter config from a training file and/or a v2 server's model metadata",
        description="Write a starter config: fields from a training file's columns (types "
        "inferred from its first rows) and/or from an Open Inference Protocol server's model "
        "metadata (GET URL/v2/models/NAME). The file says in comments what to review.",
    )
    init.add_argument(
        "--data",
        metavar="FILE",
        help="CSV, JSON Lines or Parquet: a path, glob, directory or URL as `baseline` takes "
        "(the first file is read)",
    )
    init.add_argument(
        "--predictions",
        nargs="+",
        default=[],
        metavar="NAME",
        help="columns of the training file holding the model's outputs (the rest are features)",
    )
    init.add_argument(
        "--server", metavar="URL", help="a KServe v2 / Open Inference Protocol server"
    )
    init.add_argument("--model", metavar="NAME", help="the model (needed with --server)")
    init.add_argument(
        "--protocol",
        choices=get_args(ProtocolName),
        default=None,
        help="the request format (default kserve-v2); jsonpath gives each field a path to review",
    )
    init.add_argument("-o", "--output", required=True, type=Path, metavar="CONFIG")
    init.add_argument("--force", action="store_true", help="overwrite an existing CONFIG")

    baseline = commands.add_parser(
        "baseline",
        help="build a baseline from training data (`baseline merge` joins baselines)",
        description="Build the baseline sketches from training data (CSV, JSON Lines, Parquet). "
        "`driftgauge baseline merge -c CONFIG A B -o OUT` merges baselines built on parts of a data set.",
    )
    baseline.add_argument("-c", "--config", required=True, type=Path)
    baseline.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="FILE",
        help="files, globs (data/*.csv, data/**/*.parquet), directories, or URLs: "
        "s3://bucket/prefix/*.parquet, gs://bucket/key, https://host/file.csv",
    )
    baseline.add_argument("-o", "--output", required=True, type=Path)
    baseline.add_argument(
        "--model", metavar="NAME", help="the model to build for, in a config with several"
    )
    where = baseline.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="worker processes (default: one per core this process may use)",
    )
    where.add_argument(
        "--spark",
        type=_spark_master,
        metavar="MASTER",
        help="build on Spark (local[4], spark://HOST:7077, yarn…): --data is read by Spark",
    )
    where.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="build on the Dask scheduler at ADDRESS (tcp://HOST:8786): --data is read by Dask",
    )

    serve = commands.add_parser("serve", help="run the sidecar")
    serve.add_argument("-c", "--config", required=True, type=Path)
    serve.add_argument(
        "--loop",
        choices=LOOP_CHOICES,
        default="auto",
        help="event loop: auto (uvloop when installed, the default), asyncio or uvloop",
    )

    check = commands.add_parser("check", help="validate the config and its baseline")
    check.add_argument("-c", "--config", required=True, type=Path)

    inspect = commands.add_parser("inspect", help="show what a baseline holds")
    inspect.add_argument("baseline", type=Path)

    rules = commands.add_parser(
        "rules",
        help="render Prometheus rules, a PrometheusRule and Grafana dashboards for a config",
        description="Render, for the config, Prometheus alerting and recording rules, a "
        "Prometheus Operator PrometheusRule manifest, and a Grafana dashboard per model, "
        "into DIR. The same config always gives the same bytes.",
    )
    rules.add_argument("-c", "--config", required=True, type=Path)
    rules.add_argument("-o", "--output", required=True, type=Path, metavar="DIR")
    return parser


def _merge_parser() -> argparse.ArgumentParser:
    """``driftgauge baseline merge``: a parser of its own, so the main help lists no alias."""
    merge = argparse.ArgumentParser(
        prog="driftgauge baseline merge",
        description="Merge baselines built on parts of one data set (with the same config).",
    )
    merge.add_argument("-c", "--config", required=True, type=Path)
    merge.add_argument("inputs", nargs="+", type=Path, metavar="BASELINE")
    merge.add_argument("-o", "--output", required=True, type=Path)
    merge.add_argument("--model", metavar="NAME", help="the model, in a config with several")
    _add_log_options(merge)
    merge.set_defaults(command="baseline-merge")
    return merge


def _merge_arguments(arguments: list[str]) -> list[str] | None:
    """The arguments of ``[--log-... X] baseline merge ARGS`` without the two words, else None."""
    index = 0
    while index < len(arguments) and arguments[index].startswith("--log-"):
        index += 1 if "=" in arguments[index] else 2
    if arguments[index : index + 2] != ["baseline", "merge"]:
        return None
    return arguments[:index] + arguments[index + 2 :]


def _unusable(baseline: Baseline, fix: str, rebuild: str) -> str:
    """Why a baseline just built or merged cannot be served, as one phrase ("" when it can).

    ``fix`` and ``rebuild`` end the advice for numeric fields of non-numbers
    and for fields without values: "fix the data", "rebuild the parts".
    """
    from driftgauge.baseline import mostly_not_numbers, without_values

    problems = []
    if words := mostly_not_numbers(baseline):
        problems.append(f"{'; '.join(words)}: {fix} or make the field categorical")
    if empty := without_values(baseline):
        them = "it" if len(empty) == 1 else "them"
        problems.append(f"{'; '.join(empty)}: remove {them} from the config or {rebuild}")
    return "; ".join(problems)


def _files_text(files: Sequence[str | Path]) -> str:
    shown = ", ".join(map(str, files[:3]))
    return shown + (f" and {len(files) - 3} more" if len(files) > 3 else "")


def _refuse_overwriting(output: Path, config: Path, data: Sequence[str] = ()) -> None:
    """A slip of argument order must not replace the config or a training file by a baseline.

    A folder as the output (``-o baselines/``, as ``rules -o rules/``) is refused
    here too, before the build rather than after it.
    """
    if output.is_dir():
        raise BaselineError(
            f"{output}: cannot write the baseline: it is a folder; name a file in it,"
            f" such as {output / config.with_suffix('.dgb').name}"
        )
    named = [("the config file (-c)", config)]
    named += [("a training data file (--data)", Path(d)) for d in data]
    own = output.with_suffix(".dgb")
    if own.name == output.name:  # a config named model.dgb
        own = output.with_name(f"{output.stem}-baseline.dgb")
    for what, path in named:
        with contextlib.suppress(OSError):  # absent, or a URL: not the output
            if output.samefile(path):
                raise DriftgaugeError(
                    f"{output}: -o names {what}; give the baseline a file of its own, "
                    f"such as {own.name}"
                )


def _counted(items: Sized | int, noun: str) -> str:
    """``3 features``, ``1 prediction``, ``1,000 rows``: of ``items`` or a count."""
    count = items if isinstance(items, int) else len(items)
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _spark_master(text: str) -> str:
    # Spark's own rule for a master URL: any other makes the JVM exit, a traceback in Python.
    if text == "yarn" or text.startswith(("local", "spark://", "k8s://")):
        return text
    raise argparse.ArgumentTypeError(
        f"expected local[N], spark://HOST:PORT, k8s://HOST:PORT or yarn, got {text!r}"
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < math.inf:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a number of seconds, 0 or more, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return value


def _cmd_baseline(args: argparse.Namespace) -> int:
    from driftgauge.baseline import (
        build_baseline,
        resolve_inputs,
        save_baseline,
        terminal_progress,
    )

    config = _one_model(load_config(args.config), args.model, args.config)
    # SIGTERM (a container stopping) stops the workers and removes the spill files, as Ctrl-C.
    with sigterm_raises() as stop_if_terminated:

        def progress(stage: str, done: int, total: int) -> None:
            stop_if_terminated()
            terminal_progress(stage, done, total)

        if args.spark is not None or args.dask is not None:
            _refuse_overwriting(args.output, args.config, args.data)
            built = _cluster_baseline(config, args, progress)
        else:
            inputs = resolve_inputs(args.data)
            _refuse_overwriting(args.output, args.config, [i.name for i in inputs])
            built = build_baseline(config, inputs, progress=progress, workers=args.workers)
        source = _files_text(args.data)
        if not built.rows:
            held = "holds" if len(args.data) == 1 else "hold"
            raise DataError(f"{source}: {held} no rows (no baseline written)")
        if problems := _unusable(built, "fix the data", "fix the data"):
            raise DataError(f"{source}: {problems} (no baseline written)")
        stop_if_terminated()
        save_baseline(built, args.output)
    print(
        f"wrote {args.output}: {_counted(built.rows, 'row')}, "
        f"{_counted(built.fields, 'field')}, id {built.id}"
    )
    return 0


def _cluster_baseline(config: Config, args: argparse.Namespace, progress: Progress) -> Baseline:
    """The baseline built on Spark (``--spark``) or Dask (``--dask``), which read ``--data``."""
    from driftgauge.baseline import build_baseline

    locations, source = [str(d) for d in args.data], _files_text(args.data)
    if args.spark is not None:
        from driftgauge.baseline import spark

        with spark.spark_session(args.spark) as session:
            frame = spark.read_data(session, locations, config.columns)
            runner = spark.SparkRunner(frame, source=source, files=locations, progress=progress)
            return build_baseline(config, runner)
    from driftgauge.baseline import dask
    from driftgauge.baseline.inputs import location_format

    frame = dask.read_data(locations, config.columns)  # lazy: the files' metadata only
    formats = {location_format(x, "Dask") for x in locations}
    data = f"{formats.pop().upper()} data" if len(formats) == 1 else "the data"
    with (
        dask.dask_client(args.dask) as client,
        dask.DaskRunner(
            frame, client, source=source, data=data, files=locations, progress=progress
        ) as on_dask,
    ):
        return build_baseline(config, on_dask)


def _named_before(path: Path, earlier: Sequence[Path]) -> Path | None:
    """The earlier argument naming the same file as ``path`` (a link or another spelling too)."""
    return next((e for e in earlier if os.path.samefile(e, path)), None)


def _cmd_merge(args: argparse.Namespace) -> int:
    from driftgauge.baseline import (
        check_against,
        load_baseline,
        merge_baselines,
        save_baseline,
    )

    config = _one_model(load_config(args.config), args.model, args.config)
    _refuse_overwriting(args.output, args.config)
    parts = []
    for index, path in enumerate(args.inputs):
        part = load_baseline(path)
        check_against(part, config, path)
        if part.rows and (first := _named_before(path, args.inputs[:index])):
            raise BaselineError(
                f"{path}: the same file as {first}: its rows would count twice (no baseline written)"
            )
        parts.append(part)
    merged = merge_baselines(config, parts)
    source = _files_text(args.inputs)
    if not merged.rows:
        raise BaselineError(f"{source}: the baselines hold no rows (no baseline written)")
    if problems := _unusable(
        merged, "rebuild the parts from numbers", "rebuild the parts from data that has values"
    ):
        raise BaselineError(f"{source}: {problems} (no baseline written)")
    save_baseline(merged, args.output)
    print(
        f"wrote {args.output}: {_counted(merged.rows, 'row')} from "
        f"{_counted(parts, 'baseline')}, id {merged.id}"
    )
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from driftgauge.baseline import load_served

    config = load_config(args.config)  # complete: protocol paths, TLS files and all
    problems: list[str] = []
    for model in config.all_models:
        try:
            baseline = load_served(model, named=bool(config.models))
        except BaselineError as exc:  # every model's baseline is checked, as every key is
            if str(exc) not in problems:
                problems.append(str(exc))
            continue
        named = f"model {model.model!r}: " if config.models else ""
        print(
            f"ok: {args.config} {named}({_counted(model.features, 'feature')}, "
            f"{_counted(model.predictions, 'prediction')}, protocol {model.protocol}); "
            f"baseline {model.baseline} (id {baseline.id}, {_counted(baseline.rows, 'row')})"
        )
    if problems:
        raise BaselineError("; ".join(problems))
    return 0


def _one_model(config: Config, name: str | None, where: Path) -> Config:
    """The model ``--model`` picks (the only one when the config has one)."""
    models = config.all_models
    if name is None:
        if len(models) > 1:
            names = ", ".join(repr(m.model) for m in models)
            raise ConfigError(
                f"{where}: the config has several models ({names}): pick one with --model"
            )
        return models[0]
    for model in models:
        if model.model == name:
            return model
    raise ConfigError(f"{where}: no model {name!r} in the config")


def _cmd_inspect(args: argparse.Namespace) -> int:
    from driftgauge.baseline import describe, load_baseline

    sys.stdout.write(describe(load_baseline(args.baseline), args.baseline))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from driftgauge.app import build_sidecar, run_until_stopped
    from driftgauge.baseline import load_served
    from driftgauge.runtime.allocator import freeze_startup_objects, limit_arenas, unfreeze_objects

    limit_arenas()  # before any worker thread: memory stays flat (see allocator.py)
    config = load_config(args.config)
    configure_logging(args.log_level or config.log.level, args.log_format or config.log.format)
    sidecar = build_sidecar(config, load_served(config, named=bool(config.models)))

    def started(port: int) -> None:
        freeze_startup_objects()  # listening: everything startup builds is built

    try:
        loops.run(lambda: run_until_stopped(sidecar, on_started=started), args.loop)
    finally:
        unfreeze_objects()
    return 0


def _cmd_rules(args: argparse.Namespace) -> int:
    from driftgauge.rules.writing import write_assets

    config = load_config(args.config)
    if args.output.exists() and not args.output.is_dir():  # mkdir would say "File exists"
        raise DriftgaugeError(f"{args.output}: not a directory (-o names the folder to write)")
    for path in write_assets(config, args.output):
        print(f"wrote {path}")
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from driftgauge import starter

    if args.data is None and args.server is None:
        raise starter.StarterError("init: give --data FILE, --server URL --model NAME, or both")
    if args.server is not None and args.model is None:
        raise starter.StarterError("init: --server needs --model NAME, whose metadata to read")
    starter.refuse_output(args.output, force=args.force)  # before reading data or metadata
    sample = starter.sample_data(args.data) if args.data is not None else None
    with contextlib.suppress(OSError):  # absent, or a URL: not the output
        if sample is not None and args.output.samefile(sample.path):  # even with --force
            raise starter.StarterError(
                f"{args.output}: -o names the training file (--data); name the config file, "
                f"such as {args.output.with_suffix('.yaml').name}"
            )
    metadata = starter.fetch_metadata(args.server, args.model) if args.server else None
    plan = starter.plan_starter(
        sample,
        metadata,
        predictions=args.predictions,
        model=args.model,
        protocol=args.protocol,
        server=args.server,
    )
    baseline = f"{args.output.stem}.dgb"
    starter.write_starter(starter.render_starter(plan, baseline), args.output, force=args.force)
    data = shlex.quote(str(args.data)) if args.data is not None else "TRAINING_FILE"
    print(
        f"wrote {args.output}: {_counted(plan.features, 'feature')}, "
        f"{_counted(plan.predictions, 'prediction')}, protocol {plan.protocol}; review its "
        "comments, then build the baseline: "
        f"driftgauge baseline -c {shlex.quote(str(args.output))} --data {data} "
        f"-o {shlex.quote(str(args.output.parent / baseline))}"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from driftgauge.demo import run_demo

    return run_demo(duration=args.duration, metrics_port=args.metrics_port, seed=args.seed)


_COMMANDS = {
    "baseline": _cmd_baseline,
    "baseline-merge": _cmd_merge,
    "check": _cmd_check,
    "demo": _cmd_demo,
    "init": _cmd_init,
    "inspect": _cmd_inspect,
    "rules": _cmd_rules,
    "serve": _cmd_serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``driftgauge`` console script."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    merge = _merge_arguments(arguments)
    if merge is not None:
        args = _merge_parser().parse_args(merge)
    else:
        args = _parser().parse_args(arguments)
    configure_logging(args.log_level or "INFO", args.log_format or "text")
    try:
        code = _COMMANDS[args.command](args)
        sys.stdout.flush()  # a reader that left shows here, not in the interpreter's exit
        return code
    except DriftgaugeError as exc:
        print(f"driftgauge: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Terminated:
        print(f"driftgauge: {args.command}: stopped by SIGTERM", file=sys.stderr)
        return 128 + signal.SIGTERM
    except BrokenPipeError:
        # The reader of stdout left (driftgauge inspect ... | head -1): stop quietly, as a
        # program the SIGPIPE ends does (Python ignores the signal, so the write raised).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"driftgauge: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
