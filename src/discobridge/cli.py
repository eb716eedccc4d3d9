"""Command line: parse argv, load the config, run a command, map failures to exit codes."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from discobridge import __version__, app
from discobridge.config import BindError, Config, ConfigError, load_config, parse_config
from discobridge.logs import configure_logging
from discobridge.render.resolver import render_services
from discobridge.snapshot import Snapshot

# Containers get their config as TOML text in this variable (ECS reads it from SSM).
CONFIG_VARIABLE = "DISCOBRIDGE_CONFIG"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="discobridge",
        description="Service discovery for ECS tasks with dynamic host ports (DNS, HTTP, Eureka).",
    )
    parser.add_argument("--version", action="version", version=f"discobridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("run", "run the daemon until SIGINT or SIGTERM"),
        ("snapshot", "poll AWS once and print every service with its endpoints"),
        ("check", "validate a config file"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument(
            "-c",
            "--config",
            metavar="FILE",
            help=f"TOML config file (default: the TOML text in ${CONFIG_VARIABLE}, for containers)",
        )
        if name == "snapshot":
            command.add_argument("--json", action="store_true", help="print JSON instead of text")
    demo_text = "run against an embedded fake AWS estate (no account needed)"
    demo = commands.add_parser(
        "demo",
        help=demo_text,
        description=f"{demo_text}: two ECS clusters, four hosts, Cloud Map and ECS events, served on 127.0.0.1",
    )
    demo.add_argument("--dir", default=".demo", type=Path, help="where the demo writes its config (default: .demo)")
    demo.add_argument("--dns-port", default=5353, type=int, help="DNS port on 127.0.0.1 (default: 5353)")
    demo.add_argument("--http-port", default=8080, type=int, help="HTTP port on 127.0.0.1 (default: 8080)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `discobridge` command; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args.dir, args.dns_port, args.http_port)
        config = _load(args.config)
    except ConfigError as exc:
        print(f"discobridge: config error: {exc}", file=sys.stderr)
        return 1
    if args.command == "check":
        print(f"{config.origin}: ok")
        return 0
    if args.command == "snapshot":
        configure_logging(format=config.log.format, level=_quiet(config.log.level))
        return _run_async(_snapshot(config, as_json=args.json))
    configure_logging(format=config.log.format, level=config.log.level)
    return _serve(config)


def _serve(config: Config, flags: dict[str, str] | None = None) -> int:
    """Run the daemon; a listen address that cannot be bound is one line and exit code 1."""
    try:
        return _run_async(app.run(config))
    except BindError as exc:
        hint = (flags or {}).get(exc.key)
        print(f"discobridge: {exc}" + (f"; pick another port with {hint}" if hint else ""), file=sys.stderr)
        return 1


def _load(path: str | None) -> Config:
    """The config from -c FILE, else from $DISCOBRIDGE_CONFIG (ECS injects it from SSM)."""
    if path is not None:
        return load_config(path)
    text = os.environ.get(CONFIG_VARIABLE)
    if text is None:
        raise ConfigError("", "", f"give a config file with -c FILE or its TOML text in ${CONFIG_VARIABLE}")
    return parse_config(text, f"${CONFIG_VARIABLE}")


def _quiet(level: str) -> str:
    # One-shot commands print their result on stdout; only problems belong on stderr.
    return level if level in ("warning", "error") else "warning"


def _run_async(coroutine: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up: pip install 'discobridge[fast]'
    except ImportError:
        return asyncio.run(coroutine)
    result: int = uvloop.run(coroutine)
    return result


async def _snapshot(config: Config, *, as_json: bool) -> int:
    async with app.Daemon(config) as daemon:
        ok = await daemon.refresh_all()
        snapshot = daemon.store.current
        if not ok or snapshot is None:
            errors = [s.attempts.last_error for s in daemon.store.partitions.values() if s.attempts.last_error]
            errors += [a.last_error for a in daemon.store.listings.values() if a.last_error]
            print(f"discobridge: poll failed: {'; '.join(e for e in errors if e)}", file=sys.stderr)
            return 1
    try:
        print(_format_json(snapshot) if as_json else _format_text(snapshot), flush=True)
    except BrokenPipeError:
        # `discobridge snapshot | head` closed the pipe early: not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _format_json(snapshot: Snapshot) -> str:
    return json.dumps({"generation": snapshot.generation, "services": render_services(snapshot.services)}, indent=2)


def _format_text(snapshot: Snapshot) -> str:
    lines: list[str] = []
    for service in snapshot.services.values():
        count = len(service.endpoints)
        lines.append(f"{service.name}  ({count} endpoint{'' if count == 1 else 's'})")
        for e in service.endpoints:
            lines.append(
                f"  {e.address:<21} {e.health:<9} {e.az or '-':<11} {e.source:<8} "
                f"cluster={e.cluster or '-'} task={e.task_id or '-'} container={e.container or '-'}"
            )
    return "\n".join(lines) if lines else "no services found"


def _demo(directory: Path, dns_port: int, http_port: int) -> int:
    try:
        from discobridge.fakeaws.demo import start_demo  # noqa: PLC0415 - needs the demo extra
    except ImportError as exc:
        print(f"discobridge: the demo needs the demo extra (pip install 'discobridge[demo]'): {exc}", file=sys.stderr)
        return 1
    with start_demo(directory, dns_port, http_port) as demo:
        configure_logging(format="console", level="info")
        print(demo.banner, flush=True)
        return _serve(demo.config, {"[dns] listen": "--dns-port", "[http] listen": "--http-port"})
