"""Headless Chromium for the report's browser test: a small Chrome DevTools Protocol client over
``--remote-debugging-pipe`` (stdlib only: JSON messages ended by NUL on file descriptors 3 and 4).

``find_or_install_chromium`` finds Debian's ``chromium`` and, where it can (root with apt-get),
installs it; otherwise it says why not, for the test to skip with that reason.
"""
from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--mute-audio")
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def find_or_install_chromium() -> tuple[str | None, str]:
    """(path, "") or (None, why it is not there)."""
    found = find_chromium()
    if found:
        return found, ""
    if os.environ.get("SPEEDBENCH_NO_BROWSER_INSTALL"):
        return None, "chromium is not installed and SPEEDBENCH_NO_BROWSER_INSTALL is set"
    if not shutil.which("apt-get"):
        return None, "chromium is not installed and there is no apt-get to install it (install Chromium or Chrome)"
    if os.geteuid() != 0:
        return None, "chromium is not installed and installing it needs root (apt-get install chromium)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{' '.join(command)} failed: {exc}"
        if done.returncode != 0:
            return None, f"{' '.join(command)} failed: {(done.stderr or done.stdout).strip()[-300:]}"
    found = find_chromium()
    return (found, "") if found else (None, "apt-get installed chromium but no chromium binary is on PATH")


class CDPError(RuntimeError):
    pass


@dataclass
class PageResult:
    console_errors: list[str] = field(default_factory=list)
    network: list[str] = field(default_factory=list)  # URLs the page tried to fetch beyond itself
    facts: dict[str, Any] = field(default_factory=dict)
    screenshot: bytes = b""
    full_page: bytes = b""


class Browser:
    """One headless Chromium, driven over the DevTools pipe."""

    def __init__(self, binary: str, profile: Path) -> None:
        commands_read, self._commands = os.pipe()
        self._results, results_write = os.pipe()

        def onto_3_and_4() -> None:  # in the child, before exec: the pipe ends become fds 3 and 4
            import fcntl

            high_read = fcntl.fcntl(commands_read, fcntl.F_DUPFD, 10)
            high_write = fcntl.fcntl(results_write, fcntl.F_DUPFD, 10)
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            # Only dup2 runs between fork and exec; os.pipe() ends are not inheritable, so only 3 and 4 pass.
            preexec_fn=onto_3_and_4, close_fds=False,  # noqa: PLW1509
        )
        os.close(commands_read)
        os.close(results_write)
        self._next_id = 0
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self._stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._results, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self._inbox.put(None)
                return
            buffer += chunk
            while b"\0" in buffer:
                message, buffer = buffer.split(b"\0", 1)
                self._inbox.put(json.loads(message))

    def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line.decode("utf-8", "replace").rstrip())

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline, method)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result") or {}
                return result
            self.events.append(reply)

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        try:
            message = self._inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise CDPError(f"no answer to {waiting_for} in time; chromium said: {' | '.join(self._stderr[-5:])}") from None
        if message is None:
            raise CDPError(f"chromium closed the pipe while waiting for {waiting_for}: {' | '.join(self._stderr[-5:])}")
        return message

    def wait_for(self, event: str, session: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        if any(e.get("method") == event and e.get("sessionId") == session for e in self.events):
            return
        while True:
            message = self._receive(deadline, event)
            self.events.append(message)
            if message.get("method") == event and message.get("sessionId") == session:
                return

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except CDPError:
            pass
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
        os.close(self._commands)
        os.close(self._results)


def colours(png: bytes) -> int:
    """How many colours a screenshot holds (1: a blank page)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        found = image.convert("RGB").getcolors(maxcolors=1 << 20)
    return len(found) if found is not None else 1 << 20


FACTS_SCRIPT = """JSON.stringify({
  title: document.title,
  h2: [...document.querySelectorAll('h2')].map(e => e.textContent),
  h3: [...document.querySelectorAll('h3')].map(e => e.textContent),
  sections: [...document.querySelectorAll('section[data-section]')].map(e => e.dataset.section),
  figures: [...document.querySelectorAll('figure[data-figure]')].map(f => ({
      title: f.dataset.figure, svgs: f.querySelectorAll('svg').length,
      width: f.querySelector('svg') ? f.querySelector('svg').getBoundingClientRect().width : 0,
      height: f.querySelector('svg') ? f.querySelector('svg').getBoundingClientRect().height : 0,
      table: !!(f.parentElement && f.parentElement.querySelector('table'))})),
  tables: document.querySelectorAll('table').length,
  text_length: document.body.innerText.length,
  height: document.documentElement.scrollHeight,
  overflowing: [...document.querySelectorAll('figure svg')].filter(s => s.getBoundingClientRect().right >
      document.documentElement.clientWidth + 1).length,
})"""


def open_page(binary: str, page: Path, profile: Path, width: int = 1400, height: int = 1000) -> PageResult:
    """Open ``page`` from disk; collect console errors, uncaught exceptions, log errors and any
    fetch beyond the file itself; read the page's facts; screenshot the first screen and the whole page."""
    out = PageResult()
    browser = Browser(binary, profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired", session)
        facts = browser.send("Runtime.evaluate", {"expression": FACTS_SCRIPT, "returnByValue": True}, session=session)
        out.facts = json.loads(facts["result"]["value"])
        out.screenshot = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"])
        size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        full = browser.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": min(float(size["height"]), 16000.0), "scale": 1}},
            session=session)
        out.full_page = base64.b64decode(full["data"])
    finally:
        browser.close()
    own = page.resolve().as_uri()
    for event in browser.events:
        method, params = event.get("method"), event.get("params") or {}
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.console_errors.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                             for a in params.get("args") or []))
        elif method == "Runtime.exceptionThrown":
            out.console_errors.append("exception: " + str(params.get("exceptionDetails", {}).get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            out.console_errors.append(f"log ({params['entry'].get('source')}): {params['entry'].get('text')}")
        elif method == "Network.requestWillBeSent":
            url = str(params.get("request", {}).get("url", ""))
            if url != own and not url.startswith(("data:", "about:")):
                out.network.append(url)
    return out
