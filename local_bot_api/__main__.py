"""python -m local_bot_api --port 8081 --token 123:ABC [--state FILE] — serve the local Bot API and the
playground page; with --state the chats survive a restart (the file is saved while they change)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from .server import DEFAULT_TOKEN, LocalBotAPI


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local_bot_api", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="port (0: any free port)")
    parser.add_argument("--token", action="append", help="bot token to accept (repeatable)")
    parser.add_argument("--bot-username", default=None, help="the bot's @username")
    parser.add_argument("--no-privacy", action="store_true", help="the bot sees every group message")
    parser.add_argument("--rate-limits", action="store_true", help="enforce Telegram's flood limits (429)")
    parser.add_argument("--state", default=None, help="JSON file to restore and save (files beside it)")
    parser.add_argument("--quiet", action="store_true", help="print no URLs (the caller prints its own)")
    return parser.parse_args()


async def _serve(args: argparse.Namespace) -> None:
    tokens = args.token or [DEFAULT_TOKEN]
    server = LocalBotAPI(
        tokens[0],
        host=args.host,
        port=args.port,
        bot_username=args.bot_username,
        privacy_mode=not args.no_privacy,
        rate_limits=args.rate_limits,
        state_path=args.state,
    )
    for token in tokens[1:]:
        server.add_bot(token, privacy_mode=not args.no_privacy)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Windows event loops have no add_signal_handler; Ctrl-C still ends the server there.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except OSError as error:  # the port is taken, most likely
        await server.stop()
        raise SystemExit(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    try:
        if not args.quiet:
            print(f"Local Bot API: {server.base_url}  (TELEGRAM_API_URL={server.base_url})", flush=True)
            print(f"Playground:    {server.base_url}/", flush=True)
        await stop.wait()
    finally:
        await server.stop()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(_arguments()))


if __name__ == "__main__":
    main()
