"""The explorer page in a real browser: Debian's Chromium (headless, through Playwright) opens the HTML file from
disk with every request that is not a file:// one refused, changes each control and clicks a patch, and checks that
the map shown changes and is the Python map of that setting (`vitnb.maps.attention_map`, within the page's stated
quantisation error), that the picture is `plotting.render_overlay`'s, and that nothing on the page moves.
docs/explorer.html, the committed page of the series' ViT, gets the same checks against its own numbers.
Skipped without a browser, unless VITNB_REQUIRE_BROWSER=1 (see helpers.require_browser). The update latency is
measured by benchmarks/explorer_page_latency.py, not here."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import MAPS_VIT, chromium_page, tiny_vit

from vitnb import maps
from vitnb.explorer import PageMaps, explorer_page
from vitnb.plotting.render import render_overlay

ROOT = Path(__file__).resolve().parents[1]
DOCS_PAGE = ROOT / "docs" / "explorer.html"
SCREENSHOT = ROOT / "runs" / "browser" / "explorer_page.png"
STATED_ERROR = 1 / 510

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# every box on the page but the words inside the two texts, which change by design: [selector-ish, x, y, w, h]
BOXES = """() => Array.from(document.querySelectorAll('#explorer *'))
    .filter(e => !e.closest('#prediction > *, #status > *') && e.tagName !== 'OPTION')
    .map(e => { const r = e.getBoundingClientRect(); return [e.tagName + '#' + e.id, r.x, r.y, r.width, r.height]; })"""

# the attention canvas's RGBA pixels as base64 (much faster to hand over than a list of numbers)
PICTURE = """() => {
    const c = document.getElementById('overlay'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let s = '';
    for (let i = 0; i < d.length; i += 8192) s += String.fromCharCode(...d.subarray(i, i + 8192));
    return [c.width, c.height, btoa(s)];
}"""


class Explorer:
    """The page open in Chromium, offline: its controls, its state and what it shows."""

    def __init__(self, page, path: Path):
        self.page, self.requests, self.errors = page, [], []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
        page.goto(path.as_uri())
        page.wait_for_function("window.vitnbExplorer && window.vitnbExplorer.updates > 0")
        self.boxes = page.evaluate(BOXES)

    def state(self) -> dict:
        return self.page.evaluate("vitnbExplorer.state()")

    def shown(self) -> np.ndarray:
        return np.array(self.page.evaluate("vitnbExplorer.currentMap()"))

    def picture(self) -> np.ndarray:
        """The attention canvas's pixels (H, W, 3)."""
        w, h, rgba = self.page.evaluate(PICTURE)
        return np.frombuffer(base64.b64decode(rgba), np.uint8).reshape(h, w, 4)[..., :3]

    def select(self, control: str, value) -> None:
        self.page.locator(f"#{control}").select_option(str(value))

    def press(self, control: str, key: str) -> None:
        self.page.locator(f"#{control}").focus()
        self.page.keyboard.press(key)

    def click_patch(self, row: int, col: int, grid: tuple[int, int]) -> None:
        box = self.page.locator("#overlay").bounding_box()
        x = box["x"] + (col + 0.5) * box["width"] / grid[1]
        y = box["y"] + (row + 0.5) * box["height"] / grid[0]
        self.page.mouse.click(x, y)

    def assert_still(self) -> None:
        assert self.page.evaluate(BOXES) == self.boxes, "something on the page moved"

    def assert_offline_and_clean(self) -> None:
        assert all(url.startswith("file://") for url in self.requests), self.requests
        assert self.errors == []


def python_map(cache: maps.ForwardCache, state: dict) -> torch.Tensor:
    """`attention_map` for the page's state (head H = 'mean', H + 1 = 'max'; query 0 = pooled, 1 + t = token t)."""
    heads = cache.num_heads
    query = maps.POOLED if state["query"] == 0 else state["query"] - 1
    target = None if state["target"] < 0 else state["target"]
    head = {"rollout": "rollout", "gradient": "gradient rollout"}.get(state["kind"])
    if head is None:
        head = state["head"] if state["head"] < heads else ["mean", "max"][state["head"] - heads]
    return maps.attention_map(cache, state["block"], head, query, target)


def assert_shows(explorer: Explorer, want: torch.Tensor) -> np.ndarray:
    want = want.flatten().double().numpy()
    shown = explorer.shown()
    assert np.abs(shown - want).max() <= STATED_ERROR * (want.max() - want.min()) * (1 + 1e-6) + 1e-12
    return shown


def expected_picture(dataset, index: int, shown: np.ndarray, state: dict, payload: dict) -> np.ndarray:
    """`render_overlay` of the decoded map with the page's opacity, scale, query outline and patch grid."""
    (gh, gw), (ih, iw), scale = payload["grid"], payload["image_size"], payload["scale"]
    token = state["query"] - 1 - payload["prefix"]
    box = None
    if state["kind"] != "gradient" and token >= 0:
        box = ((token // gw) * (ih // gh), (token % gw) * (iw // gw), ih // gh, iw // gw)
    image = dataset.denormalize(dataset[index][0][None])[0]
    heat = torch.from_numpy(shown.reshape(gh, gw))
    return render_overlay(image, heat, state["opacity"], payload["cmap"], scale, box, (gh, gw))


@pytest.mark.parametrize(("class_token", "pool"), [(True, "token"), (False, "avg")])
def test_every_control_shows_the_python_map_offline(tmp_path, toy, class_token, pool):
    model = tiny_vit(**MAPS_VIT, class_token=class_token, global_pool=pool)
    dataset = toy(n=9, size=8, classes=3)
    indices = [0, 1, 5]
    page_file = tmp_path / "explorer.html"
    page = explorer_page(model, dataset, indices)
    page.save(page_file)
    payload = PageMaps.of(page.html).payload
    caches = [maps.forward_cache(model, *dataset[i]) for i in indices]
    with chromium_page() as browser_page:
        explorer = Explorer(browser_page, page_file)
        state = explorer.state()
        assert (state["kind"], state["block"], state["query"], state["image"]) == ("rollout", 2, 0, 0)
        previous = assert_shows(explorer, python_map(caches[0], state))
        picture = explorer.picture()

        p = int(class_token)
        steps = [  # (what the user does, what the state then says)
            (lambda: explorer.select("kind", "raw"), dict(kind="raw", head=2)),
            (lambda: explorer.select("head", 0), dict(head=0)),
            (lambda: explorer.press("block", "ArrowLeft"), dict(block=1)),
            (lambda: explorer.select("query", 1 + p + 5), dict(query=1 + p + 5)),
            (lambda: explorer.click_patch(2, 3, (4, 4)), dict(query=1 + p + 2 * 4 + 3)),
            (lambda: explorer.select("head", 3), dict(head=3)),  # max over heads
            (lambda: browser_page.locator("#pooled").click(), dict(query=0)),
            (lambda: explorer.click_patch(0, 1, (4, 4)), dict(query=1 + p + 1)),
            (lambda: explorer.select("kind", "rollout"), dict(kind="rollout")),
            (lambda: explorer.press("block", "ArrowLeft"), dict(block=0)),
            (lambda: explorer.select("image", 2), dict(image=2)),
            (lambda: explorer.select("kind", "gradient"), dict(kind="gradient", target=-1)),
            (lambda: explorer.select("target", (caches[2].prediction + 1) % 3), dict(target=-2)),
        ]
        for act, change in steps:
            act()
            state = explorer.state()
            if change.get("target") == -2:
                change["target"] = (caches[2].prediction + 1) % 3
            assert {key: state[key] for key in change} == change, (change, state)
            shown = assert_shows(explorer, python_map(caches[state["image"]], state))
            assert not np.array_equal(shown, previous), f"the map did not change: {change}"
            new_picture = explorer.picture()
            assert not np.array_equal(new_picture, picture), f"the picture did not change: {change}"
            want = expected_picture(dataset, indices[state["image"]], shown, state, payload)
            assert np.abs(new_picture.astype(int) - want).max() <= 1, f"not render_overlay's picture: {change}"
            explorer.assert_still()
            previous, picture = shown, new_picture

        explorer.press("opacity", "ArrowLeft")  # the same map, drawn fainter
        state = explorer.state()
        assert state["opacity"] == pytest.approx(0.55)
        assert np.array_equal(explorer.shown(), previous) and not np.array_equal(explorer.picture(), picture)
        want = expected_picture(dataset, indices[2], previous, state, payload)
        assert np.abs(explorer.picture().astype(int) - want).max() <= 1
        explorer.assert_still()
        assert browser_page.locator("#block").is_disabled() and browser_page.locator("#query").is_disabled()
        explorer.assert_offline_and_clean()


def test_docs_page_opens_offline_and_shows_its_numbers():
    """docs/explorer.html, the series' ViT: it opens from disk with no network and shows the maps it stores."""
    assert DOCS_PAGE.exists(), "docs/explorer.html is committed: notebook 07 or `python -m vitnb explore` writes it"
    stored = PageMaps.of(DOCS_PAGE.read_text("utf-8"))
    payload = stored.payload
    with chromium_page() as browser_page:
        explorer = Explorer(browser_page, DOCS_PAGE)

        def assert_shows_stored() -> None:
            s = explorer.state()
            target = payload["images"][s["image"]]["prediction"] if s["target"] < 0 else s["target"]
            kind = s["kind"]
            want = stored.map(s["image"], kind, block=s["block"], head=s["head"], query=s["query"], target=target)
            np.testing.assert_allclose(explorer.shown(), want.flatten(), rtol=1e-6, atol=1e-9)
            explorer.assert_still()

        assert_shows_stored()
        assert explorer.picture().std() > 10  # an image and a map, not a blank canvas
        (gh, gw) = payload["grid"]
        for act in (
            lambda: explorer.select("kind", "raw"),
            lambda: explorer.select("head", 1),
            lambda: explorer.press("block", "ArrowLeft"),
            lambda: explorer.click_patch(gh // 2, gw // 2, (gh, gw)),
            lambda: explorer.select("image", len(payload["images"]) - 1),
            lambda: explorer.select("kind", "gradient"),
            lambda: explorer.select("target", (payload["images"][-1]["prediction"] + 1) % len(payload["classes"])),
        ):
            before = explorer.shown()
            act()
            assert not np.array_equal(explorer.shown(), before)
            assert_shows_stored()
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browser_page.screenshot(path=str(SCREENSHOT))
        explorer.assert_offline_and_clean()
