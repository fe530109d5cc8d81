"""Headless Chromium (Debian's package) driven over the DevTools protocol.

A minimal client on ``websockets`` (already in the orchestrator lock): navigate, type into
and click elements, read the page text and save PNG screenshots. No browser download.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.servers import stop

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class Chromium:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, binary: str, workdir: Path, size: tuple[int, int] = (1400, 900)) -> None:
        self.binary = binary
        self.workdir = workdir
        self.size = size
        self._ids = itertools.count(1)
        self._stack = contextlib.ExitStack()
        self._process: subprocess.Popen[bytes] | None = None
        self._ws: ClientConnection | None = None

    def __enter__(self) -> Chromium:
        profile = self.workdir / "profile"
        profile.mkdir(parents=True)
        with self._stack:
            with (self.workdir / "chromium.log").open("wb") as log:
                self._process = subprocess.Popen(
                    [
                        self.binary,
                        *FLAGS,
                        f"--user-data-dir={profile}",
                        f"--window-size={self.size[0]},{self.size[1]}",
                        "about:blank",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._stack.callback(stop, self._process, 15)
            self._ws = self._stack.enter_context(
                connect(
                    self._page_websocket(profile / "DevToolsActivePort"),
                    max_size=None,
                    open_timeout=30,
                )
            )
            self.send("Page.enable")
            self.send(
                "Emulation.setDeviceMetricsOverride",
                width=self.size[0],
                height=self.size[1],
                deviceScaleFactor=1,
                mobile=False,
            )
            self._stack = self._stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _page_websocket(self, port_file: Path, timeout: float = 60.0) -> str:
        """The page target's DevTools URL, once Chromium wrote its debugging port."""
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                log = (self.workdir / "chromium.log").read_text(errors="replace")
                raise RuntimeError(f"chromium exited with {self._process.returncode}: {log}")
            lines = port_file.read_text().split() if port_file.exists() else []
            if lines:
                url = f"http://127.0.0.1:{lines[0]}/json/list"
                with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as r:
                    pages = [t for t in json.load(r) if t["type"] == "page"]
                    if pages:
                        return pages[0]["webSocketDebuggerUrl"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no DevTools page after {timeout}s")
            time.sleep(0.2)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a DevTools method and return its result (events in between are dropped)."""
        assert self._ws is not None
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=60))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def text(self) -> str:
        """The visible text of the page (no-break spaces as plain spaces)."""
        text = self.evaluate("document.body ? document.body.innerText : ''") or ""
        return text.replace("\u00a0", " ")

    def wait_for_text(self, *needles: str, timeout: float = 90.0) -> str:
        """Poll the page text until it contains every needle; return it."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if all(n in text for n in needles):
                return text
            if time.monotonic() > deadline:
                missing = [n for n in needles if n not in text]
                raise TimeoutError(f"{missing} not on the page after {timeout}s:\n{text[:2000]}")
            time.sleep(0.5)

    def wait_for(self, selector: str, timeout: float = 90.0) -> None:
        """Poll until an element matches the CSS selector."""
        deadline = time.monotonic() + timeout
        query = f"document.querySelector({json.dumps(selector)}) !== null"
        while not self.evaluate(query):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{selector} not on the page after {timeout}s:\n{self.text()}")
            time.sleep(0.5)

    def type_into(self, selector: str, text: str) -> None:
        """Focus the element and type ``text`` as keyboard input (React sees real events)."""
        self.wait_for(selector)
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", text=text)

    def click(self, selector: str) -> None:
        self.wait_for(selector)
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    def screenshot(self, path: Path) -> Path:
        """Save the viewport as PNG."""
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
