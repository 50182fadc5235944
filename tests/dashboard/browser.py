"""Debian's chromium driven by Selenium through Debian's chromedriver, and processes to watch.

Never a browser downloaded at test time: without /usr/bin/chromium and /usr/bin/chromedriver
(`make system-deps` installs both) the browser tests skip and say so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[2]
ARTEFACTS = Path(os.environ.get("PUMPCTL_TEST_ARTEFACTS", REPO / "test-artefacts")) / "dashboard"
PUMPCTL = [sys.executable, "-m", "pumpctl.cli"]


def chromium(width: int = 1280, height: int = 1000) -> Any:
    """A headless chromium session with a fresh profile (closed by the caller's `quit()`)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("no browser: Debian's chromium and chromium-driver are not installed "
                    "(`make system-deps` installs them)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="pumpctl-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def screenshot(driver: Any, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


class Watched:
    """A subprocess whose stderr lines are collected by a thread, to wait for one."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None,
                 cwd: Path = REPO) -> None:
        self.args = args
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env={**os.environ, **(env or {})}, cwd=cwd)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip())
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, text: str, timeout_s: float = 60.0) -> str:
        def found() -> str | None:
            return next((line for line in self.lines if text in line), None)

        with self._cond:
            self._cond.wait_for(lambda: found() is not None or self.proc.poll() is not None,
                                timeout_s)
            line = found()
        if line is None:
            raise AssertionError(f"{' '.join(self.args[2:4])}: no {text!r} in its output:\n"
                                 + "\n".join(self.lines[-20:]))
        return line

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def dashboard(broker_url: str, *extra: str, env: dict[str, str] | None = None,
              ) -> tuple[Watched, str]:
    """`pumpctl dashboard` on a port the kernel picks (`--listen 127.0.0.1:0`: no window in
    which a parallel test takes a port chosen beforehand), subscribed; and its page URL."""
    dash = Watched([*PUMPCTL, "dashboard", "--mqtt", broker_url, "--listen", "127.0.0.1:0",
                    *extra], env=env)
    try:
        line = dash.wait_for("pumpctl dashboard on")
        dash.wait_for("dashboard subscribed")
    except BaseException:
        dash.stop()
        raise
    url = line.split(" on ", 1)[1].split()[0]
    return dash, url
