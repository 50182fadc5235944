"""The page in a real browser: Mosquitto, two simulated `pumpctl run`s, `pumpctl dashboard`.

Real time (the runs are separate processes at a modest speed-up), so these take about half a
minute each. Screenshots go to test-artefacts/dashboard/ (gitignored) for a person to look at.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.browser import PUMPCTL, REPO, Watched, chromium, dashboard, screenshot
from tests.telemetry.broker import Mosquitto, SubscriberProcess, TlsFiles
from tests.telemetry.conftest import USERS

PLAN = REPO / "configs" / "plans" / "ketamine-0.5mgkg-40min.yaml"
STEPPED = REPO / "configs" / "plans" / "ketamine-stepped-0.5mgkg-40min.yaml"
SPEED = 2  # run seconds per real second
POLL_S = 2.0  # run seconds between status polls: one real second at SPEED
POLL_REAL_S = POLL_S / SPEED


def run_args(plan: Path, broker_url: str, site: str, journal: Path, *extra: str) -> list[str]:
    return [*PUMPCTL, "run", str(plan), "--weight", "70", "--sim", "--speed", str(SPEED),
            "--poll", str(POLL_S), "--journal", str(journal), "--mqtt", broker_url,
            "--site", site, *extra]


@pytest.fixture
def processes() -> Iterator[list[Watched]]:
    started: list[Watched] = []
    yield started
    for proc in started:
        proc.stop()


def start_dashboard(processes: list[Watched], broker_url: str, *extra: str,
                    env: dict[str, str] | None = None) -> str:
    dash, url = dashboard(broker_url, *extra, env=env)
    processes.append(dash)
    return url


def wait(driver: Any, timeout_s: float, condition: Callable[[Any], Any], what: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.05).until(condition)
    except TimeoutException:
        screenshot(driver, f"failed-{re.sub(r'[^a-z0-9]+', '-', what.lower())}")
        raise AssertionError(f"page did not show {what} within {timeout_s:g} s") from None


def card(driver: Any, key: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'article.card[data-key="{key}"]')


def text(driver: Any, key: str, selector: str) -> str:
    from selenium.webdriver.common.by import By

    return str(card(driver, key).find_element(By.CSS_SELECTOR, selector).text)


def volume(driver: Any, key: str) -> float | None:
    match = re.match(r"([\d.]+) of", text(driver, key, ".volume-text"))
    return float(match.group(1)) if match else None


def test_two_runs_alarm_and_a_killed_controller_in_chromium(
        broker: Mosquitto, tmp_path: Path, processes: list[Watched]) -> None:
    driver = chromium()
    try:
        url = start_dashboard(processes, broker.url)
        alarms = SubscriberProcess(broker, "pumpctl/lab2/+/event", "alarm-watch")
        steady = Watched(run_args(PLAN, broker.url, "lab1", tmp_path / "a"))
        faulty = Watched(run_args(STEPPED, broker.url, "lab2", tmp_path / "b",
                                  "--pump-id", "syringe-3", "--sim-fault", "occlusion@20s"))
        processes += [steady, faulty]
        driver.get(url)
        wait(driver, 60, lambda d: len(d.find_elements("css selector", "article.card")) == 2,
             "both cards")
        wait(driver, 30, lambda d: volume(d, "lab1/pump0") is not None, "a delivered volume")
        first = volume(driver, "lab1/pump0")
        assert first is not None
        wait(driver, 30, lambda d: (volume(d, "lab1/pump0") or 0) > first, "the volume advance")
        assert "INFUSING" in text(driver, "lab1/pump0", ".state-text")
        assert text(driver, "lab1/pump0", ".drug-name") == "ketamine"
        assert "Next vital signs" in text(driver, "lab1/pump0", ".timeline-list")
        assert driver.find_elements("css selector", '[data-key="lab1/pump0"] .line-delivered')
        screenshot(driver, "1-two-runs")

        # The occlusion: the page shows the alarm within two polls of it reaching the broker.
        assert alarms.wait_for_line('"event":"alarm"', timeout_s=90), "no alarm published"
        wait(driver, 2 * POLL_REAL_S,
             lambda d: "ALARM" in text(d, "lab2/syringe-3", ".alarm-kind"), "the alarm")
        alarm_line = text(driver, "lab2/syringe-3", ".alarm")
        # At --speed 2 the run's clock is seconds ahead of the wall clock by now: the alarm's
        # time says whose clock it is.
        assert re.search(r"at \d\d:\d\d:\d\d run clock", alarm_line), alarm_line
        screenshot(driver, "2-alarm")
        wait(driver, 30, lambda d: "FAULTED" in text(d, "lab2/syringe-3", ".state-text"),
             "the faulted run")
        assert faulty.proc.wait(timeout=30) == 6  # the run really faulted, exit code 6

        # A controller killed outright: its Last Will turns the card at once.
        steady.proc.send_signal(signal.SIGKILL)
        wait(driver, 5, lambda d: text(d, "lab1/pump0", ".state-text") == "CONNECTION LOST",
             "the lost controller")
        lost = text(driver, "lab1/pump0", ".conn")
        assert re.search(r"Last Will at \d\d:\d\d:\d\d wall clock; its last sample, #\d+, "
                         r"at \d\d:\d\d:\d\d run clock", lost), lost
        assert "ahead of the wall clock" in text(driver, "lab1/pump0", ".meta")
        screenshot(driver, "3-controller-killed")
        driver.set_window_size(768, 1024)  # a tablet held upright
        time.sleep(0.2)  # let the layout settle before the picture (nothing to wait on)
        screenshot(driver, "4-tablet")
        alarms.stop()
    finally:
        driver.quit()


def test_pause_from_the_page_behind_the_login(
        secure_broker: Mosquitto, tls_files: TlsFiles, tmp_path: Path,
        processes: list[Watched]) -> None:
    from selenium.webdriver.common.by import By

    driver = chromium(1100, 1100)
    try:
        host = f"127.0.0.1:{secure_broker.port}?ca={tls_files.ca}"
        run = Watched(run_args(PLAN, f"mqtts://pump@{host}", "lab1", tmp_path / "a",
                               "--remote-commands"),
                      env={"PUMPCTL_MQTT_PASSWORD": USERS["pump"]})
        processes.append(run)
        url = start_dashboard(processes, f"mqtts://alice@{host}", "--remote-commands",
                              env={"PUMPCTL_MQTT_PASSWORD": USERS["alice"],
                                   "PUMPCTL_DASHBOARD_PASSWORD": "ward seven night"})
        driver.get(url)
        wait(driver, 60, lambda d: d.find_elements(By.CSS_SELECTOR, ".cmd-pause")
             and d.find_element(By.CSS_SELECTOR, ".cmd-pause").is_displayed(), "the buttons")
        assert not driver.find_elements(By.XPATH, "//button[contains(., 'Start')]")
        driver.find_element(By.CSS_SELECTOR, ".cmd-pause").click()
        wait(driver, 5, lambda d: d.find_element(By.ID, "login-dialog").is_displayed(),
             "the login")
        driver.find_element(By.ID, "login-password").send_keys("wrong guess")
        driver.find_element(By.ID, "login-submit").click()
        wait(driver, 10, lambda d: "Not logged in" in d.find_element(By.ID, "login-error").text,
             "the refused login")
        field = driver.find_element(By.ID, "login-password")
        field.clear()
        field.send_keys("ward seven night")
        driver.find_element(By.ID, "login-submit").click()
        wait(driver, 10, lambda d: d.find_element(By.ID, "command-dialog").is_displayed(),
             "the pause confirmation")
        driver.find_element(By.ID, "command-reason").send_keys("line check")
        screenshot(driver, "5-pause-confirm")
        driver.find_element(By.ID, "command-submit").click()
        wait(driver, 30, lambda d: "PAUSED" in text(d, "lab1/pump0", ".state-text"),
             "the paused pump")
        event = text(driver, "lab1/pump0", ".last-event")
        assert "run paused by mqtt:alice" in event and "line check" in event, event
        screenshot(driver, "6-paused")
    finally:
        driver.quit()
