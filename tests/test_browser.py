"""Notebook 07's attention explorer in a real browser: JupyterLab (headless, on 127.0.0.1) driven by Debian's
Chromium through Playwright. Runs the notebook, checks the widget renders, moves the layer slider with the
keyboard and checks the picture changes; saves a screenshot to runs/browser/07_attention_explorer.png.

Skipped when /usr/bin/chromium is missing, unless VITNB_REQUIRE_BROWSER=1 (CI), which turns the skip into a
failure. The server gets VITNB_PROFILE=quick and its own VITNB_RUNS folder (the real checkpoint of notebook 06
is copied in when it exists; otherwise the notebook trains its quick stand-in).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import chromium_page, require_browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "07_attention_maps.ipynb"
SCREENSHOT = ROOT / "runs" / "browser" / "07_attention_explorer.png"
CHECKPOINT = ROOT / "runs" / "06_finetuning" / "vit_fmnist.pt"
pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a JupyterLab server, a browser and a notebook run


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with code {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"jupyter lab did not answer {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def wait_for_idle_kernel(url: str, token: str, timeout: float = 90.0) -> None:
    """Until the server reports a kernel and every kernel is idle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/api/kernels?token={token}", timeout=5) as response:
            kernels = json.load(response)
        if kernels and all(k["execution_state"] == "idle" for k in kernels):
            return
        time.sleep(0.5)
    raise RuntimeError(f"no idle kernel after {timeout:.0f} s: {kernels}")


@pytest.fixture
def lab_server():
    """A token-protected JupyterLab on 127.0.0.1 serving a temporary copy of notebook 07; yields (url, token)."""
    require_browser()
    with tempfile.TemporaryDirectory(prefix="vitnb-browser-") as tmp:
        tmp = Path(tmp)
        notebooks = tmp / "notebooks"
        notebooks.mkdir()
        shutil.copy(ROOT / "notebooks" / NOTEBOOK, notebooks / NOTEBOOK)
        runs = tmp / "runs"
        if CHECKPOINT.exists():
            (runs / "06_finetuning").mkdir(parents=True)
            shutil.copy(CHECKPOINT, runs / "06_finetuning" / CHECKPOINT.name)
        port, token = free_port(), secrets.token_hex(16)
        env = os.environ | {
            "VITNB_PROFILE": "quick",
            "VITNB_RUNS": str(runs),
            "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"),  # no user settings or workspaces leak in
            "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        }
        # render every cell (no virtual scrolling of the notebook), so all outputs are in the page
        settings = tmp / "lab-settings" / "@jupyterlab" / "notebook-extension"
        settings.mkdir(parents=True)
        (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
        news = tmp / "lab-settings" / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True)
        (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))  # no pop-up
        env["JUPYTERLAB_SETTINGS_DIR"] = str(tmp / "lab-settings")
        log = tmp / "server.log"
        command = [
            str(Path(sys.executable).with_name("jupyter")),
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--port-retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={notebooks}",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if os.geteuid() == 0:  # containers and CI runners often run as root
            command.append("--allow-root")
        with open(log, "w") as out:
            server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_up(f"{url}/api/status?token={token}", server, log)
            yield url, token
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@pytest.fixture
def page():
    """A Playwright page in Debian's Chromium (headless, fresh profile); closed and stopped afterwards."""
    with chromium_page() as page:
        yield page


def picture_bytes(image) -> list[int]:
    """The bytes behind an <img> (ipywidgets.Image serves its PNG as a blob: URL)."""
    return image.evaluate("async img => Array.from(new Uint8Array(await (await fetch(img.src)).arrayBuffer()))")


def test_attention_explorer_in_jupyterlab(lab_server, page):
    url, token = lab_server
    page.set_default_timeout(60_000)
    page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
    # wait for the notebook and its kernel
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    wait_for_idle_kernel(url, token)

    # Run > Run All Cells, through the menu as a user would
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

    explorer = page.locator(".vitnb-attention-explorer")
    explorer.wait_for(timeout=150_000)
    # every code cell in view has run: its prompt shows a number, not '*' or nothing (the folded solutions at the
    # end show only a placeholder; the kernel going idle below covers them)
    code_cells = page.locator(".jp-CodeCell")
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        prompts = code_cells.locator(".jp-InputArea .jp-InputPrompt").evaluate_all(
            "els => els.filter(e => e.offsetParent !== null).map(e => e.textContent)"
        )
        if prompts and all(p.strip().strip("[]:").isdigit() for p in prompts):
            break
        time.sleep(1)
    else:
        pytest.fail(f"the notebook did not finish running: prompts {prompts}")
    wait_for_idle_kernel(url, token)

    body = page.locator("body").inner_text()
    assert "Error displaying widget" not in body
    assert "Traceback (most recent call last)" not in body

    pictures = explorer.locator("img")
    assert pictures.count() == 3  # the input, the attention overlay and the colorbar
    overlay = explorer.locator("img.vitnb-overlay")
    overlay.scroll_into_view_if_needed()
    assert overlay.evaluate("img => img.complete && img.naturalWidth") > 0
    before = picture_bytes(overlay)
    assert before[:4] == [0x89, 0x50, 0x4E, 0x47]  # a PNG

    # the layer slider: focus its handle and press the left arrow (the notebook leaves it at the last layer)
    layer = explorer.locator(".widget-slider", has=page.locator("label", has_text="block"))
    readout = layer.locator(".widget-readout")
    start = int(readout.inner_text())
    layer.locator(".noUi-handle").focus()
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and picture_bytes(overlay) == before:
        time.sleep(0.2)
    after = picture_bytes(overlay)
    assert int(readout.inner_text()) == start - 2
    assert after != before, "the attention picture did not change when the layer slider moved"
    assert "Error displaying widget" not in page.locator("body").inner_text()

    # a click on a patch of the query grid chooses that patch as the query: the picture changes (the patch is
    # outlined), the query list follows, and nothing moves on the page
    box = overlay.bounding_box()
    before = after
    grid = explorer.locator(".vitnb-query-grid button")
    assert grid.count() >= 4
    grid.nth(grid.count() // 2).click()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and picture_bytes(overlay) == before:
        time.sleep(0.2)
    assert picture_bytes(overlay) != before, "the attention picture did not change when a patch was clicked"
    query = explorer.locator(".widget-dropdown", has=page.locator("label", has_text="query")).locator("select")
    chosen = query.evaluate("s => s.options[s.selectedIndex].text").replace("\xa0", " ")  # ipywidgets: no-break spaces
    middle = grid.count() // 2  # the 7x7 grid's centre, patch (3, 3)
    side = round(grid.count() ** 0.5)
    assert chosen == f"patch ({middle // side}, {middle % side})"
    assert overlay.bounding_box() == box, "the picture moved when the query changed"

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    explorer.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
