"""A real browser on `datagen view`, for the browser tests (tests/test_view_browser.py) and the screenshots in docs/
(`python -m bench.view_screenshots`): Debian's headless Chromium driven by selenium through chromium-driver, and
`datagen view` started as the installed command in a subprocess.

The machine may have no network: Chromium is started with everything that would reach out (updates, sync,
QUIC probes, first-run pages) switched off, and selenium is given the driver's path, so Selenium Manager never
looks for one to download.
"""

import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DATAGEN = Path(sys.executable).with_name("datagen")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")


def missing() -> str | None:
    """Why the browser cannot run here (None when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return f"{path} is missing (apt-get install chromium chromium-driver; `make test` installs them)"
    return None


def chromium(profile: Path, width: int = 1300, height: int = 1000):
    """Headless Chromium at `width` x `height` with its profile in `profile`, as a selenium WebDriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for driver.get_log("browser")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    # The page's own size, exactly (the window's includes what a headless window still counts as its frame).
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    driver.set_page_load_timeout(60)
    return driver


class ViewServer:
    """`datagen view ARGS` running in a subprocess in `cwd` (a workspace) on a free port; `url` is the address it
    printed once listening. A context manager: leaving it stops the server (SIGTERM, then SIGKILL after 10 s)."""

    def __init__(self, *args: str, cwd: Path, timeout: float = 60):
        self.log = Path(cwd) / "view-stderr.log"
        env = {**os.environ, "DSPY_CACHEDIR": str(Path(cwd) / ".dspy_cache")}
        with self.log.open("w") as stderr:
            self.process = subprocess.Popen([str(DATAGEN), "view", *args, "--port", "0"], cwd=cwd, env=env,
                                            stdout=subprocess.PIPE, stderr=stderr, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.process.stdout] + [lines.put(None)],
                         daemon=True).start()
        self.url = None
        try:
            while self.url is None:
                line = lines.get(timeout=timeout)
                if line is None:
                    raise RuntimeError(f"datagen view exited ({self.process.wait()}): {self.stderr()}")
                if line.startswith("datagen view: http"):
                    self.url = line.split()[2].rstrip("/")
        except queue.Empty:
            self.stop()
            raise RuntimeError(f"datagen view printed no URL in {timeout:g} s: {self.stderr()}") from None
        except BaseException:
            self.stop()
            raise

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "ViewServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def copy_workspace(root: Path, target: Path) -> Path:
    """This repository's workspace folders (programs, signatures, metrics, data) copied to `target`."""
    for name in ("programs", "signatures", "metrics", "data"):
        shutil.copytree(root / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def scored_run(workspace: Path, out: Path, respond, max_tokens: int = 200, inputs: list[Path] | None = None):
    """A style_clone run of `inputs` (default: the workspace's data/samples) on the fake model answering
    `respond(passage)`, every sample scored on chrf (an offline metric; a bar of 0 keeps them all)."""
    from datagen.workspace.config import Config
    from datagen.runs.generate import RunSettings, generate

    from .fakes import FakeEngine
    from .test_generate import fake_model

    return generate("style_clone", inputs or [workspace / "data/samples"], out, workspace=workspace, config=Config(),
                    model=fake_model(FakeEngine(respond=respond)), settings=RunSettings(max_tokens=max_tokens),
                    min_scores={"chrf": 0.0})
