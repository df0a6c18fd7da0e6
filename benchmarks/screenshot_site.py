"""Build the leaderboard site from the committed bundles and screenshot it in headless Chromium.

    python benchmarks/screenshot_site.py [--out DIR] [--site DIR]

Writes ``index.png`` (the cross-suite table, sorted by lift after a real click on its header) and one
``suite_<name>.png`` per suite (its heatmaps with CIs, lineage graph and provenance) into ``--out`` (default
``results/screenshots/``, not committed), and prints how long each step took. Needs the Debian ``chromium``
package (``apt-get install chromium``); the site is served from a local ``http.server`` on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.bundle import BUNDLE, Bundle  # noqa: E402
from benchmark.leaderboard import build_site  # noqa: E402
from benchmark.leaderboard.browser import Chromium  # noqa: E402


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "screenshots")
    parser.add_argument("--site", type=Path, default=None, help="build the site here (default: a temp dir)")
    args = parser.parse_args()
    if args.site is not None:
        return shoot(args.site, args.out)
    with tempfile.TemporaryDirectory(prefix="slbench-site-") as tmp:
        return shoot(Path(tmp) / "site", args.out)


def shoot(site_dir: Path, out: Path) -> int:
    """Build the site into ``site_dir``, serve it and screenshot the index and every suite page into ``out``."""
    t0 = time.perf_counter()
    paths = sorted(p for p in (ROOT / "results" / "suites").glob(f"*/{BUNDLE}")
                   if not p.parent.name.startswith("."))  # hidden: publishing's copies of replaced results
    bundles = [Bundle.model_validate_json(p.read_bytes()) for p in paths]
    build_site(bundles, site_dir)
    print(f"built {site_dir} from {len(bundles)} bundle(s) in {time.perf_counter() - t0:.1f} s")
    out.mkdir(parents=True, exist_ok=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with Chromium(width=1400, height=900) as browser:
            browser.goto(base + "index.html")
            browser.click("#cells th[data-key=effect]")
            shots = [browser.screenshot(out / "index.png")]
            for b in bundles:
                browser.goto(f"{base}suites/{b.suite.name}/index.html")
                shots.append(browser.screenshot(out / f"suite_{b.suite.name}.png"))
            if browser.errors:
                print("page errors: " + "; ".join(browser.errors), file=sys.stderr)
                return 1
    finally:
        server.shutdown()
    for shot in shots:
        print(f"wrote {shot} ({shot.stat().st_size / 1024:.0f} KiB)")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
