"""Latency of one update of the explorer page (`vitnb.explorer`) per control, in headless Chromium.

Usage: .venv/bin/python benchmarks/explorer_page_latency.py [--updates 50] [--images 12] [--checkpoint PATH]

Writes the page of the series' ViT (`vitnb.config.SERIES_PRESET`: notebook 06's checkpoint if it exists, else
random weights; speed does not depend on them) for `--images` Fashion-MNIST test images, opens it from disk in
Debian's Chromium (headless, through Playwright, every non-file request refused), and times `--updates` changes of
each control:
- input to drawn: real keyboard and mouse input (Playwright's arrow keys on the focused control, clicks on the
  picture), timed by the page from the input event's timestamp to the end of its handler, which decodes the map,
  draws the picture into the canvas and sets the texts (`vitnbExplorer.lastEventMs`);
- handler and to the next frame: the control's event dispatched in the page at a random moment of a frame, timed
  with performance.now() to the end of its handler, and to a task queued from the next animation frame, i.e.
  until the frame that shows the change has been produced (the handler plus the wait for that frame: up to
  16.7 ms at 60 Hz).
Target: every change shows in the next frame (a handler well under 16 ms). Also reports the page's size and the
time from opening the file to the first picture (decoding the payload included).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import vitnb
from vitnb.checkpoint import load_model
from vitnb.config import SERIES_PRESET
from vitnb.data import fashion_mnist
from vitnb.explorer import explorer_page

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = ROOT / "runs" / "06_finetuning" / "vit_fmnist.pt"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync"]

SHAPES = "(d => [d.blocks, d.heads, d.queries, d.classes.length, d.images.length])(vitnbExplorer.data)"
# One control, `values` in turn, each dispatched at a random moment of a frame: the handler's time, and the time
# until the frame that shows the change.
TIME_CONTROL = """async ({control, values, event}) => {
    const el = document.getElementById(control), handler = [], frame = [];
    const nextFrame = () => new Promise(done => requestAnimationFrame(() => setTimeout(done, 0)));
    for (const value of values) {
        await nextFrame();
        await new Promise(done => setTimeout(done, Math.random() * 16));
        const start = performance.now();
        if (control === 'overlay') {
            const r = el.getBoundingClientRect(), [row, col] = value, [gh, gw] = vitnbExplorer.data.grid;
            el.dispatchEvent(new MouseEvent('click', {bubbles: true, clientX: r.left + (col + 0.5) * r.width / gw,
                                                       clientY: r.top + (row + 0.5) * r.height / gh}));
        } else if (control === 'pooled') {
            el.click();
        } else {
            el.value = String(value);
            el.dispatchEvent(new Event(event, {bubbles: true}));
        }
        handler.push(performance.now() - start);
        await nextFrame();
        frame.push(performance.now() - start);
    }
    return {handler, frame};
}"""


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def build_page(checkpoint: Path, images: int, out: Path) -> tuple[str, int]:
    vitnb.seed_everything(0)
    if checkpoint.exists():
        model, _ = load_model(checkpoint)
        weights = str(checkpoint.relative_to(ROOT)) if checkpoint.is_relative_to(ROOT) else str(checkpoint)
    else:
        model, weights = vitnb.VisionTransformer(vitnb.preset(SERIES_PRESET)).eval(), "random (no checkpoint)"
    page = explorer_page(model, fashion_mnist(train=False), images=images, source="fashion_mnist test")
    page.save(out)
    return weights, page.size


def plan(blocks: int, heads: int, queries: int, classes: int, images: int, n: int) -> list[tuple]:
    """(label, control, event, values, state to set first) per control, for `TIME_CONTROL`."""
    cycle = lambda k, step=1: [(step * i) % k for i in range(1, n + 1)]  # noqa: E731
    patches = [(i % 7, (3 * i) % 7) for i in range(1, n + 1)]
    return [
        ("image", "image", "change", cycle(images), {"kind": "raw"}),
        ("map kind", "kind", "change", [("raw", "rollout", "gradient")[i % 3] for i in range(1, n + 1)], {}),
        ("block", "block", "input", cycle(blocks), {"kind": "raw"}),
        ("head", "head", "change", cycle(heads + 2), {"kind": "raw"}),
        ("query (list)", "query", "change", cycle(queries, 7), {"kind": "raw"}),
        ("query (click a patch)", "overlay", None, patches, {"kind": "raw"}),
        ("query (pooled button)", "pooled", None, [None] * n, {"kind": "rollout"}),
        ("class", "target", "change", [i % (classes + 1) - 1 for i in range(1, n + 1)], {"kind": "gradient"}),
        ("opacity", "opacity", "input", [round(0.05 * (i % 21), 2) for i in range(1, n + 1)], {"kind": "raw"}),
    ]


def real_input(page, label: str, n: int) -> list[float]:
    """`n` updates of one control by real input (keys on the focused control, clicks on the picture), each timed
    by the page from its input event to the end of its handler (ms)."""
    times = []
    for i in range(n):
        before = page.evaluate("vitnbExplorer.updates")
        if label == "query (click a patch)":
            box = page.locator("#overlay").bounding_box()
            row, col = i % 7, (3 * i) % 7
            page.mouse.click(box["x"] + (col + 0.5) * box["width"] / 7, box["y"] + (row + 0.5) * box["height"] / 7)
        else:
            control = page.locator(f"#{REAL_INPUT[label]}")
            control.focus()
            up = control.evaluate(AT_END) == "no"  # go up unless at the end
            select = control.evaluate("e => e.tagName") == "SELECT"
            keys = ("ArrowDown", "ArrowUp") if select else ("ArrowUp", "ArrowDown")
            page.keyboard.press(keys[0] if up else keys[1])  # a select's next option is ArrowDown, a slider's ArrowUp
        assert page.evaluate("vitnbExplorer.updates") == before + 1, f"{label}: no update"
        times.append(page.evaluate("vitnbExplorer.lastEventMs"))
    return times


AT_END = "e => (e.tagName === 'SELECT' ? e.selectedIndex === e.options.length - 1 : +e.value >= +e.max) ? 'yes' : 'no'"
REAL_INPUT = {"image": "image", "map kind": "kind", "block": "block", "head": "head", "query (list)": "query"}
REAL_INPUT |= {"query (click a patch)": "overlay", "class": "target", "opacity": "opacity"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=50, help="updates timed per control")
    parser.add_argument("--images", type=int, default=12, help="images on the page")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        path = Path(tmp) / "explorer.html"
        weights, size = build_page(args.checkpoint, args.images, path)
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
        start = time.perf_counter()
        page.goto(path.as_uri())
        page.wait_for_function("window.vitnbExplorer && vitnbExplorer.updates > 0")
        load = time.perf_counter() - start
        info = page.evaluate(SHAPES)
        results, inputs = {}, {}
        for label, control, event, values, setup in plan(*info, args.updates):
            for name, value in setup.items():
                page.select_option(f"#{name}", value)
            results[label] = page.evaluate(TIME_CONTROL, {"control": control, "values": values, "event": event})
            if label in REAL_INPUT:
                inputs[label] = real_input(page, label, args.updates)
        version = browser.version
        browser.close()
    report(args, weights, size, version, load, results, inputs)


def report(args, weights: str, size: int, version: str, load: float, results: dict, inputs: dict) -> None:
    def stats(times: list[float]) -> str:
        return f"{statistics.median(times):7.2f} {statistics.quantiles(times, n=10)[-1]:6.2f} {max(times):6.2f}"

    print(f"explorer page: {args.images} images, {size / 1e6:.2f} MB, weights: {weights}")
    print(f"Chromium {version} headless, {cpu_name()}, {os.cpu_count()} CPUs")
    print(f"open the file to first picture: {load * 1e3:.0f} ms; {args.updates} updates per control; ms\n")
    print(f"{'':24s} {'input to drawn':>22s} {'handler':>22s} {'to the next frame':>22s}")
    print(f"{'control':24s}" + f" {'median':>7s} {'p90':>6s} {'max':>6s}" * 3)
    for label, times in results.items():
        real = stats(inputs[label]) if label in inputs else f"{'-':>7s} {'-':>6s} {'-':>6s}"
        print(f"{label:24s} {real} {stats(times['handler'])} {stats(times['frame'])}")
    worst = max(max(t["handler"]) for t in results.values())
    # The handler draws synchronously, so whatever it drew is in the next frame the browser produces.
    verdict = "every change is drawn in the next frame" if worst < 1000 / 60 else "SOME CHANGES MISS THE NEXT FRAME"
    print(f"\nslowest handler {worst:.2f} ms: {verdict} (60 Hz, 16.7 ms)")


if __name__ == "__main__":
    main()
