#!/usr/bin/env python3
"""Render an autofit report.html to a PNG with headless Chromium, for reviews and the README.

    python tools/screenshot_report.py reports/glm4-9b-24GB/report.html docs/report.png
    python tools/screenshot_report.py REPORT.html OUT.png --width 1400 --max-height 9000

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages on file
descriptors 3 and 4), so nothing but the Python standard library and a Chromium binary is needed (Debian:
`apt-get install chromium`; or set AUTOFIT_CHROMIUM=/path/to/chrome). The page is opened from file:// with every
network request other than file: and data: blocked, waits until every plotly figure has drawn, and is captured
whole (up to --max-height CSS pixels). tests/test_report.py uses the same `Browser` class.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
                  "--disable-dev-shm-usage", "--remote-debugging-pipe")

# JavaScript: how many plotly figures the page holds, and how many have drawn their SVG
FIGURES_JS = """(() => { const figs = Array.from(document.querySelectorAll('.js-plotly-plot'));
  return {total: figs.length, rendered: figs.filter(f => f.querySelector('svg.main-svg') &&
          f.getBoundingClientRect().height > 0).length}; })()"""


def find_chromium() -> str | None:
    """The Chromium (or Chrome) binary: $AUTOFIT_CHROMIUM, else the first of CHROMIUM_NAMES on PATH."""
    env = os.environ.get("AUTOFIT_CHROMIUM")
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(RuntimeError):
    pass


class Browser:
    """Headless Chromium with one page, driven over the DevTools protocol on a pipe.

    `events` collects every event of the page (method, params) for the caller to inspect: console messages,
    exceptions, network requests."""

    def __init__(self, executable: str | None = None, width: int = 1280, height: int = 900, timeout_s: float = 60):
        self.executable = executable or find_chromium()
        if not self.executable:
            raise BrowserError("no Chromium found: apt-get install chromium, or set AUTOFIT_CHROMIUM")
        self.timeout_s = timeout_s
        self.profile = tempfile.mkdtemp(prefix="autofit-chromium-")
        self.events: list[tuple[str, dict]] = []
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._log = tempfile.TemporaryFile()
        # our write end -> Chromium's fd 3; Chromium's fd 4 -> our read end. The fds are moved above 10 first so
        # that bash's redirections cannot clobber one another (dash takes single-digit fds only).
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        import fcntl

        child_in = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        child_out = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.close(to_child_r)
        os.close(from_child_w)
        args = [*CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"]
        script = f'exec "$0" "$@" 3<&{child_in} 4>&{child_out} {child_in}<&- {child_out}>&-'
        self.process = subprocess.Popen([shutil.which("bash") or "/bin/bash", "-c", script, self.executable, *args],
                                        pass_fds=(child_in, child_out), stdin=subprocess.DEVNULL,
                                        stdout=self._log, stderr=self._log, start_new_session=True)
        os.close(child_in)
        os.close(child_out)
        self._write = os.fdopen(to_child_w, "wb", buffering=0)
        self._read = os.fdopen(from_child_r, "rb", buffering=0)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable")
            self.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        except BaseException:
            self.close()
            raise

    # ---- protocol

    def _read_loop(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self._read.read(1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                with self._cond:
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self.events.append((message.get("method", ""), message.get("params", {})))
                    self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def call(self, method: str, params: dict | None = None, session: bool | None = None,
             timeout_s: float | None = None) -> dict:
        """Send one command (to the page's session unless it is a Target./Browser. command) and wait for its
        result."""
        with self._cond:
            self._next_id += 1
            ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is None:
            session = not method.startswith(("Target.", "Browser."))
        if session:
            message["sessionId"] = self.session
        try:
            self._write.write(json.dumps(message).encode() + b"\0")
        except OSError as exc:  # Chromium is gone
            raise BrowserError(f"Chromium exited before {method}: {exc}; {self.log_tail()}") from None
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        with self._cond:
            while ident not in self._replies:
                if self._closed:
                    raise BrowserError(f"Chromium exited during {method}: {self.log_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"{method}: no answer from Chromium in {timeout_s or self.timeout_s:.0f} s")
                self._cond.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, since: int = 0, timeout_s: float | None = None) -> dict:
        """The first event named `method` at index >= `since` of `events`, waiting for it."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        with self._cond:
            while True:
                for name, params in self.events[since:]:
                    if name == method:
                        return params
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise BrowserError(f"no {method} event within {timeout_s or self.timeout_s:.0f} s")
                self._cond.wait(left)

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": await_promise})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:60]}...: {result['exceptionDetails'].get('text')}: "
                               f"{result['exceptionDetails'].get('exception', {}).get('description', '')}")
        return result["result"].get("value")

    # ---- pages

    def open(self, path: str | Path, offline: bool = True, figure_timeout_s: float = 30) -> dict[str, float]:
        """Open a local file and wait for its load event and for every plotly figure to draw. With `offline`,
        every request that is not file: or data: fails (and shows up as a Network.loadingFailed event).
        Returns timings in seconds: load (navigation start to the load event, as the page measured it),
        wall (our clock, navigate to load event), figures (our clock, navigate to every figure drawn) and paint
        (navigation start to the first contentful paint; None if the page painted nothing)."""
        url = Path(path).resolve().as_uri()
        if offline:
            self.call("Network.setBlockedURLs", {"urls": ["http://*", "https://*", "ws://*", "wss://*", "ftp://*"]})
        mark = len(self.events)
        started = time.monotonic()
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired", since=mark)
        wall = time.monotonic() - started
        deadline = time.monotonic() + figure_timeout_s
        while True:
            figures = self.evaluate(FIGURES_JS)
            if figures["rendered"] >= figures["total"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        drawn = time.monotonic() - started
        load = self.evaluate("(() => { const n = performance.getEntriesByType('navigation')[0];"
                             " return n ? n.loadEventEnd / 1000 : null; })()")
        paint = self.evaluate("(() => { const p = performance.getEntriesByName('first-contentful-paint')[0];"
                              " return p ? p.startTime / 1000 : null; })()")
        return {"load": load if load is not None else wall, "wall": wall, "figures": drawn, "paint": paint}

    def screenshot(self, out: str | Path, width: int = 1280, max_height: int = 20000) -> tuple[int, int]:
        """Capture the whole page (up to max_height CSS pixels) to a PNG. Returns (width, height)."""
        # plotly's toolbars show in headless Chromium (no hover media); a picture does not need them
        self.evaluate("(() => { const s = document.createElement('style');"
                      " s.textContent = '.modebar-container{display:none !important}';"
                      " document.head.appendChild(s); })()")
        height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        height = max(1, min(height, max_height))
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        time.sleep(0.3)  # let responsive plots relayout to the new viewport
        shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                    "clip": {"x": 0, "y": 0, "width": width, "height": height,
                                                             "scale": 1}})
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(base64.b64decode(shot["data"]))
        return width, height

    # ---- what the page did

    def console_errors(self, since: int = 0) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors among events[since:]."""
        errors = []
        for method, params in self.events[since:]:
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                     for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                errors.append("exception: " + str(details.get("exception", {}).get("description")
                                                  or details.get("text")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                errors.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
        return errors

    def requests(self, since: int = 0) -> list[str]:
        """URLs of every request the page made, among events[since:]."""
        return [p.get("request", {}).get("url", "") for m, p in self.events[since:]
                if m == "Network.requestWillBeSent"]

    def log_tail(self, chars: int = 2000) -> str:
        try:
            self._log.seek(0)
            return self._log.read().decode(errors="replace")[-chars:]
        except (OSError, ValueError):
            return ""

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                try:
                    self.call("Browser.close", timeout_s=5)
                except BrowserError:
                    pass
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=5)
        finally:
            for handle in (self._write, self._read):
                try:
                    handle.close()
                except OSError:
                    pass
            self._log.close()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="the report.html to render")
    parser.add_argument("png", type=Path, help="where to write the PNG")
    parser.add_argument("--width", type=int, default=1280, help="viewport width in CSS pixels (default 1280)")
    parser.add_argument("--max-height", type=int, default=20000,
                        help="capture at most this many CSS pixels from the top (default 20000: the whole page)")
    parser.add_argument("--chromium", help="Chromium binary (default: $AUTOFIT_CHROMIUM or chromium on PATH)")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"no such file: {args.report}", file=sys.stderr)
        return 2
    try:
        with Browser(args.chromium, width=args.width) as browser:
            timing = browser.open(args.report)
            width, height = browser.screenshot(args.png, width=args.width, max_height=args.max_height)
            errors = browser.console_errors()
    except BrowserError as exc:
        print(f"screenshot failed: {exc}", file=sys.stderr)
        return 1
    for error in errors:
        print(f"page error: {error}", file=sys.stderr)
    print(f"{args.png}: {width}x{height} px; page loaded in {timing['load']:.2f} s (first paint "
          f"{timing['paint'] or 0:.2f} s), figures drawn after {timing['figures']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
