"""Take the console's screenshots in docs/console/ from a real running hub (headless Chromium through Playwright).

    python docs/console/screenshots.py        # from the repository's root, with `pip install -e '.[test]'`

The hub runs in a temporary folder with a few mappings: `uploads` (a folder whose function fails until a marker
file exists, giving records up to a file destination), `thumbnails` (a folder whose function succeeds),
`heartbeat` (a schedule) and `orders` (a Redis stream, disabled). A few files are dropped, some fail, and the page
is shot: the overview, one mapping's details with its failure destination, and a replay that finished.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.fixtures_browser import chromium_path  # noqa: E402
from tests.fixtures_redis import free_port  # noqa: E402
from tests.helpers import HubProcess, read_jsonl, wait_for  # noqa: E402

HERE = Path(__file__).resolve().parent


def config(work: Path, port: int) -> dict[str, object]:
    return {
        "checkpoints": "memory://",
        "shutdown_grace": "5s",
        "admin": {"listen": f"127.0.0.1:{port}"},
        "functions": {
            "picky": {
                "handler": "functions.recorder.until_marker",
                "environment": {"MARKER_FILE": str(work / "ready")},
            },
            "thumbnail": {"handler": "functions.recorder.record"},
            "heartbeat": {"handler": "functions.recorder.record"},
            "orders": {"handler": "functions.recorder.record"},
        },
        "mappings": [
            {
                "name": "uploads",
                "function": "picky",
                "source": {"type": "files", "path": str(work / "uploads")},
                "maximum_retry_attempts": 0,
                "destination_config": {"on_failure": {"type": "file", "path": str(work / "failures.jsonl")}},
            },
            {"name": "thumbnails", "function": "thumbnail", "source": {"type": "files", "path": str(work / "photos")}},
            {
                "name": "heartbeat",
                "function": "heartbeat",
                "source": {"type": "schedule", "expression": "rate(1 minute)"},
            },
            {
                "name": "orders",
                "function": "orders",
                "enabled": False,
                "source": {"type": "redis", "url": f"redis://127.0.0.1:{free_port()}/0", "stream": "orders"},
            },
        ],
    }


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        port = free_port()
        out = work / "calls.jsonl"
        for name in ("uploads", "photos"):
            (work / name).mkdir()
        with HubProcess(work, config(work, port), {"RECORDER_OUT": str(out)}) as hub:
            hub.start(ready="admin endpoint")
            for i in range(3):
                (work / "uploads" / f"invoice-{i + 1}.pdf").write_text(f"invoice {i}\n")
            for i in range(5):
                (work / "photos" / f"photo-{i + 1}.jpg").write_text(f"photo {i}\n")
            wait_for(lambda: len(read_jsonl(work / "failures.jsonl")) == 3, 30, "three failure records")
            wait_for(lambda: len(read_jsonl(out)) >= 5, 30, "the photos")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"http://127.0.0.1:{port}/")
                page.locator("#mappings tbody tr").first.wait_for()
                time.sleep(1)  # a screenshot, not a test: let the first refresh settle
                page.screenshot(path=str(HERE / "overview.png"))
                page.locator('tr[data-mapping="uploads"] button').click()
                page.locator("#failures tr[data-failure-id]").first.wait_for()
                page.locator("#failures tr[data-failure-id] details").first.click()
                time.sleep(1)
                page.screenshot(path=str(HERE / "failures.png"), full_page=True)
                (work / "ready").write_text("")
                page.locator("#failures tr[data-failure-id] input.pick").nth(0).check()
                page.locator("#failures tr[data-failure-id] input.pick").nth(1).check()
                page.click("#replay")
                page.wait_for_selector('#replay-text[data-state="finished"]', timeout=30000)
                time.sleep(1)
                page.screenshot(path=str(HERE / "replay.png"), full_page=True)
                browser.close()
            hub.stop()
    print("wrote", *(str(HERE / n) for n in ("overview.png", "failures.png", "replay.png")))


if __name__ == "__main__":
    main()
