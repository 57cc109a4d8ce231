"""Render the published asv dashboard in headless Chromium and save a screenshot.

    python benchmarks/asv_screenshot.py --out docs/img/asv_dashboard.png \\
        [--html .asv/html] [--page PAGE] [--vendor DIR]

Serves ``--html`` (what ``asv publish`` wrote) on 127.0.0.1 and opens it with
``chromium --headless``.  asv's page loads jQuery, flot, bootstrap, stupidtable
and blueimp-md5 from public CDNs; on a machine without internet access pass
``--vendor DIR`` with those packages unpacked from npm (``npm pack jquery@3.3.1
flot@0.8.3 flot-orderbars@1.0.0 blueimp-md5@2.19.0 bootstrap@3.1.1
stupid-table-plugin`` and untar each into DIR/<name>-<version>/): the page is
then copied and its CDN links are pointed at those files.  Not an asv suite
(asv imports this module while discovering benchmarks: nothing runs on import).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

#: RoI Align forward, W1, implementations side by side (the x axis) at the last commit
PAGE = "bench_roi.RoiAlignForward.time_call?x-axis=implementation&workload=W1"

#: CDN file name in asv's index.html -> its file in the npm package (glob under --vendor)
VENDOR = {
    "jquery-3.3.1.min.js": "jquery-*/package/dist/jquery.min.js",
    "jquery.flot.min.js": "flot-*/package/jquery.flot.js",
    "jquery.flot.time.min.js": "flot-*/package/jquery.flot.time.js",
    "jquery.flot.selection.min.js": "flot-*/package/jquery.flot.selection.js",
    "jquery.flot.categories.min.js": "flot-*/package/jquery.flot.categories.js",
    "jquery.flot.orderBars.js": "flot-orderbars-*/package/js/jquery.flot.orderBars.js",
    "stupidtable.min.js": "stupid-table-plugin-*/package/stupidtable.min.js",
    "md5.min.js": "blueimp-md5-*/package/js/md5.min.js",
    "bootstrap.min.js": "bootstrap-*/package/dist/js/bootstrap.min.js",
    "bootstrap.min.css": "bootstrap-*/package/dist/css/bootstrap.min.css",
}


def localise(html_dir: Path, vendor: Path, dest: Path) -> None:
    """Copy the dashboard to ``dest`` with its CDN links pointing at local copies."""
    shutil.copytree(html_dir, dest)
    (dest / "vendor").mkdir()
    for name, pattern in VENDOR.items():
        found = sorted(vendor.glob(pattern))
        if not found:
            raise SystemExit(f"--vendor {vendor}: no {pattern}")
        shutil.copy(found[-1], dest / "vendor" / name)
    for page in dest.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        text = re.sub(r'(src|href)="https://[^"]*/([^"/]+)"',
                      lambda m: (f'{m.group(1)}="vendor/{m.group(2)}"' if m.group(2) in VENDOR
                                 else m.group(0)), text)
        text = re.sub(r'\s(integrity|crossorigin|referrerpolicy)="[^"]*"', "", text)
        page.write_text(text, encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", type=Path, default=Path(".asv/html"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--page", default=PAGE,
                    help="the part of the dashboard URL after '#' (default: RoI Align "
                         "forward on W1, one bar per implementation; empty: the grid)")
    ap.add_argument("--vendor", type=Path, default=None)
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    ap.add_argument("--size", default="1400,1000")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="asv-shot-") as tmp:
        root = args.html
        if args.vendor is not None:
            root = Path(tmp) / "html"
            localise(args.html, args.vendor, root)
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}/index.html"
        if args.page:
            url += f"#{args.page}"
        cmd = [args.chromium, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", f"--user-data-dir={Path(tmp) / 'profile'}",
               f"--screenshot={args.out.resolve()}", f"--window-size={args.size}",
               "--virtual-time-budget=20000", "--hide-scrollbars", url]
        try:
            subprocess.run(cmd, check=True, timeout=180, capture_output=True)
        finally:
            server.shutdown()
    print(f"wrote {args.out} ({url})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
