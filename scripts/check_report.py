#!/usr/bin/env python3
"""Checks a molpeg-report page in headless Chromium, as the report test does on its tiny pipeline:
every figure rendered (SVG larger than 100 x 100 px with content), no console message, nothing
fetched; writes a screenshot next to the page (or to --screenshot).

    python scripts/check_report.py runs/hiv/report.html
    python scripts/check_report.py runs/exp-molpeg/seed0/hiv/report.html --screenshot shot.png

Exit status 0 when every check passes; prints one JSON line with what it measured.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# The measurement the report test makes (figure sizes and fetched resources, written into the DOM
# that --dump-dom prints), from the one file both use.
CHECK_SCRIPT = (Path(__file__).resolve().parent.parent / "crates/molpeg-report/tests/check_figures.html").read_text()

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0", "--window-size=1400,9000"]


def browse(chrome, page, action, profile):
    out = subprocess.run(["timeout", "180", chrome, *FLAGS, f"--user-data-dir={profile}", *action, f"file://{page}"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"check_report: chromium failed ({out.returncode}):\n{out.stderr[-2000:]}")
    console = [line for line in out.stderr.splitlines() if ":CONSOLE" in line]
    return out.stdout, console


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("page", type=Path)
    ap.add_argument("--screenshot", type=Path)
    args = ap.parse_args()
    chrome = os.environ.get("MOLPEG_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chrome:
        sys.exit("check_report: no chromium in PATH (scripts/setup.sh installs Debian's chromium; or set MOLPEG_CHROMIUM)")
    page = args.page.resolve()
    html = page.read_text()
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        # Beside the page, so relative links (if any) resolve as they would for the page itself.
        check_page = page.with_name(page.stem + "-check.html")
        check_page.write_text(html.replace("</body>", CHECK_SCRIPT + "</body>"))
        try:
            dom, console = browse(chrome, check_page, ["--dump-dom"], Path(tmp) / "p1")
        finally:
            check_page.unlink()
        start = dom.find('<pre id="molpeg-check">')
        if start < 0:
            sys.exit("check_report: the check script did not run")
        start += len('<pre id="molpeg-check">')
        text = dom[start:dom.index("</pre>", start)]
        for a, b in [("&quot;", '"'), ("&lt;", "<"), ("&gt;", ">"), ("&#39;", "'"), ("&amp;", "&")]:
            text = text.replace(a, b)
        check = json.loads(text)
        shot = (args.screenshot or page.with_suffix(".png")).resolve()
        _, console2 = browse(chrome, page, [f"--screenshot={shot}"], Path(tmp) / "p2")
    figures = check["figures"]
    expected = html.count('<figure class="plot"')
    if len(figures) != expected:
        problems.append(f"{len(figures)} figures rendered, the page has {expected}")
    for f in figures:
        if not (f["width"] > 100 and f["height"] > 100 and f["elements"] > 20):
            problems.append(f"figure not rendered: {f}")
    if check["resources"]:
        problems.append(f"the page fetched {check['resources']}")
    if console or console2:
        problems.append(f"console messages: {console + console2}")
    png = shot.read_bytes() if shot.exists() else b""
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        problems.append("no screenshot")
    print(json.dumps({"page": str(args.page), "figures": len(figures), "figure_ids": [f["id"] for f in figures],
                      "resources": len(check["resources"]), "console": len(console) + len(console2),
                      "screenshot": str(shot), "screenshot_bytes": len(png), "problems": problems}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
