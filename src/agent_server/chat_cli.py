"""`agent-server chat`: talk to a running server from the terminal.

A client of the same `/api` as the chat page: each line is one turn streamed from
`POST /api/chat/message/stream` (httpx + httpx-sse), printed as it arrives with
rich, tool calls and fallback hops included. The session carries over from line to
line; `/new`, `/sessions`, `/open ID` and `/quit` steer it.

It never imports the server: it only needs httpx, httpx-sse and rich (the `chat`
extra), so it works against any deployment.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
from httpx_sse import connect_sse
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

DEFAULT_URL = "http://127.0.0.1:8000"
HELP = (
    "Type a message and press Enter. Commands: /new (a new conversation), "
    "/sessions (your conversations), /open ID (continue one), /help, /quit."
)


class ChatError(Exception):
    """The server refused a request: its `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _error(response: httpx.Response) -> ChatError:
    try:
        body = json.loads(response.read())
        error = body["error"]
        return ChatError(response.status_code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        return ChatError(response.status_code, f"http_{response.status_code}", response.text[:200])


class ChatClient:
    """The few `/api` calls the terminal chat makes."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 300.0) -> None:
        self.api_key = api_key
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=httpx.Timeout(timeout))

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def sessions(self) -> list[dict[str, Any]]:
        response = self._http.get("/api/chat/sessions", headers=self._headers())
        if response.status_code != 200:
            raise _error(response)
        return list(response.json()["sessions"])

    def history(self, session_id: str) -> dict[str, Any]:
        response = self._http.get(f"/api/chat/history/{session_id}", headers=self._headers())
        if response.status_code != 200:
            raise _error(response)
        return dict(response.json())

    def stream(self, message: str, session_id: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
        """The turn's events as `(name, data)`, `done` or `error` last."""
        body: dict[str, Any] = {"message": message}
        if session_id:
            body["session_id"] = session_id
        return self._events("/api/chat/message/stream", body)

    def decide(
        self, session_id: str, decisions: list[dict[str, Any]]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Answer a paused turn's tool calls; the resumed turn's events, as `stream`."""
        return self._events(
            f"/api/chat/session/{session_id}/approval/stream", {"decisions": decisions}
        )

    def _events(self, path: str, body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        with connect_sse(self._http, "POST", path, json=body, headers=self._headers()) as source:
            if source.response.status_code != 200:
                raise _error(source.response)
            for event in source.iter_sse():
                try:
                    data = json.loads(event.data)
                except ValueError:
                    data = {"raw": event.data}
                yield event.event, data if isinstance(data, dict) else {"value": data}


def _args(args: Any) -> str:
    if isinstance(args, dict):
        return ", ".join(f"{k}={v!r}" for k, v in args.items())
    return repr(args)


def _short(output: Any, width: int = 100) -> str:
    text = str(output)
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict) and "result" in parsed:
            text = str(parsed["result"])
    except ValueError:
        pass
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass
class TurnPrinter:
    """Prints one turn's events as they arrive; remembers whether it is mid-line."""

    console: Console
    midline: bool = False
    pending: list[dict[str, Any]] = field(default_factory=list)
    """The tool calls the turn paused on (`approval_required`): the session asks about
    each once the stream has ended."""

    def _line(self, text: Text) -> None:
        if self.midline:
            self.console.print()
            self.midline = False
        self.console.print(text)

    def event(self, name: str, data: dict[str, Any]) -> None:
        handler: Callable[[dict[str, Any]], None] | None = getattr(self, f"_on_{name}", None)
        # Unknown events are ignored: a newer server may send more.
        if handler is not None:
            handler(data)

    def _on_message(self, data: dict[str, Any]) -> None:
        content = str(data.get("content", ""))
        if content:
            self.console.print(content, end="", markup=False, highlight=False, soft_wrap=True)
            self.midline = not content.endswith("\n")

    def _on_tool_start(self, data: dict[str, Any]) -> None:
        self._line(
            Text.assemble(
                ("  ⚙ ", "cyan"),
                (str(data.get("name")), "bold cyan"),
                (f"({_args(data.get('args'))})", "cyan"),
            )
        )

    def _on_tool_end(self, data: dict[str, Any]) -> None:
        failed = data.get("status") == "error"
        duration = data.get("duration_ms")
        took = f"  {duration:g} ms" if isinstance(duration, int | float) else ""
        self._line(
            Text.assemble(
                ("    → ", "red" if failed else "green"),
                (_short(data.get("output")), "red" if failed else ""),
                (took, "dim"),
            )
        )

    def _on_fallback(self, data: dict[str, Any]) -> None:
        following = f"trying {data['to']}" if data.get("to") else "no model left"
        self._line(
            Text(
                f"  ↪ {data.get('from')} failed ({data.get('reason')}): {following}", style="yellow"
            )
        )

    def _on_reset(self, data: dict[str, Any]) -> None:
        self._line(
            Text(
                f"  ↻ {data.get('model')} failed mid-answer ({data.get('reason')}): the text "
                "above is discarded, retrying with the next model",
                style="yellow",
            )
        )

    def _on_approval_required(self, data: dict[str, Any]) -> None:
        self.pending = [c for c in data.get("pending_tool_calls") or [] if isinstance(c, dict)]
        for call in self.pending:
            self._line(
                Text(
                    f"  ⏸ {call.get('name')}({_args(call.get('args'))}) waits for your approval",
                    style="yellow",
                )
            )

    def _on_done(self, data: dict[str, Any]) -> None:
        if data.get("status") == "awaiting_approval":
            return  # the pause was shown; the summary comes with the resumed turn
        usage = data.get("usage") or {}
        parts = [str(data.get("model_used") or "?")]
        if data.get("fallbacks"):
            parts.append(f"{len(data['fallbacks'])} fallback(s)")
        if usage.get("total_tokens"):
            parts.append(f"{usage['total_tokens']} tokens")
        parts.append(f"{data.get('latency_ms', 0)} ms")
        line = Text("  " + " · ".join(parts), style="dim")
        if data.get("degraded"):
            line.append("  DEGRADED", style="bold yellow")
        self._line(line)

    def _on_error(self, data: dict[str, Any]) -> None:
        self._line(Text(f"  ✗ {data.get('code')}: {data.get('message')}", style="bold red"))

    def finish(self) -> None:
        if self.midline:
            self.console.print()
            self.midline = False


class ChatSession:
    """The read-eval-print loop: one line in, one streamed turn out."""

    def __init__(
        self,
        client: ChatClient,
        console: Console,
        session_id: str | None = None,
        ask: Callable[[str, bool], str] | None = None,
    ) -> None:
        self.client = client
        self.console = console
        self.session_id = session_id
        self._ask = ask or (lambda prompt, secret: console.input(prompt, password=secret))

    def run(self) -> int:
        self.console.print(Text(f"agent-server chat · {HELP}", style="dim"))
        if self.session_id:
            self.console.print(Text(f"continuing session {self.session_id}", style="dim"))
        while True:
            try:
                line = self._ask("[bold magenta]you >[/] ", False)
            except (EOFError, KeyboardInterrupt):
                self.console.print()
                return 0
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                if self.command(line) == "quit":
                    return 0
                continue
            self.turn(line)

    def command(self, line: str) -> str | None:
        name, _, arg = line.partition(" ")
        if name in ("/quit", "/exit", "/q"):
            return "quit"
        if name == "/new":
            self.session_id = None
            self.console.print(Text("new conversation", style="dim"))
        elif name == "/sessions":
            self.list_sessions()
        elif name == "/open" and arg.strip():
            self.open(arg.strip())
        elif name == "/help":
            self.console.print(Text(HELP, style="dim"))
        else:
            self.console.print(Text(f"unknown command {name}; {HELP}", style="yellow"))
        return None

    def _refused(self, exc: ChatError) -> bool:
        """Show a refusal; on 401 ask for a key. True if the request may be retried."""
        self.console.print(Text(f"  ✗ {exc.status} {exc.code}: {exc.message}", style="bold red"))
        if exc.status != 401:
            return False
        try:
            key = self._ask("API key (kept for this run only): ", True).strip()
        except (EOFError, KeyboardInterrupt):
            return False
        self.client.api_key = key or None
        return bool(key)

    def list_sessions(self) -> None:
        try:
            sessions = self.client.sessions()
        except ChatError as exc:
            if self._refused(exc):
                self.list_sessions()
            return
        except httpx.HTTPError as exc:
            self.console.print(Text(f"  ✗ cannot reach the server: {exc}", style="bold red"))
            return
        if not sessions:
            self.console.print(Text("no conversations yet", style="dim"))
            return
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("")
        table.add_column("session", no_wrap=True, min_width=36)
        table.add_column("title", overflow="ellipsis", no_wrap=True)
        table.add_column("turns", justify="right")
        table.add_column("last active")
        for s in sessions:
            here = "*" if s["session_id"] == self.session_id else ""
            table.add_row(
                here,
                s["session_id"],
                s.get("title") or "(untitled)",
                str(s.get("turn_count", 0)),
                str(s.get("last_active_at", ""))[:19].replace("T", " "),
            )
        self.console.print(table)
        self.console.print(Text("/open ID continues one", style="dim"))

    def open(self, session_id: str) -> None:
        try:
            history = self.client.history(session_id)
        except ChatError as exc:
            if self._refused(exc):
                self.open(session_id)
            return
        except httpx.HTTPError as exc:
            self.console.print(Text(f"  ✗ cannot reach the server: {exc}", style="bold red"))
            return
        self.session_id = history["session_id"]
        turns = history.get("turns", [])
        self.console.print(Text(f"session {self.session_id}: {len(turns)} turn(s)", style="dim"))
        for turn in turns[-5:]:
            self.console.print(Text.assemble(("you: ", "magenta"), turn["user_message"]))
            self.console.print(turn["response"], markup=False, highlight=False)

    def turn(self, message: str) -> None:
        events = partial(self.client.stream, message, self.session_id)
        while True:
            printer = self._follow(events)
            if printer is None or not printer.pending or not self.session_id:
                return
            decisions = self._decisions(printer.pending)
            if decisions is None:
                self.console.print(
                    Text("  the turn stays paused; /open this session later to decide", style="dim")
                )
                return
            events = partial(self.client.decide, self.session_id, decisions)

    def _decisions(self, pending: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """Ask about each pending call: approve, edit (new JSON arguments) or deny (with
        a reason). None when the person leaves (Ctrl-D / Ctrl-C): the turn stays paused."""
        decisions: list[dict[str, Any]] = []
        try:
            for call in pending:
                label = f"{call.get('name')}({_args(call.get('args'))})"
                while True:
                    # `ask` renders rich markup: the brackets and the arguments are text.
                    answer = self._ask(escape(f"  run {label}? [y]es / [e]dit / [n]o: "), False)
                    choice = answer.strip().lower()[:1]
                    if choice == "y":
                        decisions.append({"tool_call_id": call["id"], "action": "approve"})
                    elif choice == "n":
                        reason = self._ask("  reason (optional): ", False).strip()
                        decisions.append(
                            {"tool_call_id": call["id"], "action": "deny"}
                            | ({"reason": reason} if reason else {})
                        )
                    elif choice == "e":
                        raw = self._ask("  new arguments as JSON: ", False)
                        try:
                            args = json.loads(raw)
                        except ValueError:
                            args = None
                        if not isinstance(args, dict):
                            self.console.print(Text("  not a JSON object", style="yellow"))
                            continue
                        decisions.append(
                            {"tool_call_id": call["id"], "action": "edit", "args": args}
                        )
                    else:
                        continue
                    break
        except (EOFError, KeyboardInterrupt):
            self.console.print()
            return None
        return decisions

    def _follow(
        self, events: Callable[[], Iterator[tuple[str, dict[str, Any]]]]
    ) -> TurnPrinter | None:
        """Print one stream of turn events (again after a key was asked for on 401); the
        printer (with any pause), or None when the stream failed or was refused."""
        printer = TurnPrinter(self.console)
        try:
            for name, data in events():
                if name == "metadata" and data.get("session_id"):
                    self.session_id = str(data["session_id"])
                printer.event(name, data)
        except ChatError as exc:
            printer.finish()
            if self._refused(exc):
                return self._follow(events)
            return None
        except KeyboardInterrupt:
            printer.finish()
            self.console.print(Text("  ■ stopped; nothing of this turn was saved", style="dim"))
            return None
        except httpx.HTTPError as exc:
            printer.finish()
            self.console.print(Text(f"  ✗ connection failed: {exc}", style="bold red"))
            return None
        printer.finish()
        return printer


def run(url: str, session_id: str | None = None, api_key: str | None = None) -> int:
    client = ChatClient(url, api_key)
    try:
        return ChatSession(client, Console(highlight=False), session_id).run()
    finally:
        client.close()
