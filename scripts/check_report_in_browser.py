"""Load the report in headless Chromium and check that it renders: ``python scripts/check_report_in_browser.py
[reports/index.html]``.

How: a copy of the page gets a small script appended that, on the window's ``load`` event, checks
in the browser that every ``<img>`` decoded (``complete`` and ``naturalWidth > 0``) and that every
``href="#id"`` link has its target, and writes the verdict as JSON into a ``<pre>``. Chromium
prints the DOM after the page settles (``--dump-dom``, with a virtual-time budget so the load
handlers have run), and we read the verdict back. No network, no CDP client, no extra package.

Chromium: the Debian package ``chromium`` (``apt-get install -y chromium``); set ``CHROMIUM=path``
to use another binary. Exit codes: 0 page OK; 1 a problem was found (listed); 2 no browser or no
page.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHECK_SCRIPT = """
<script>
window.addEventListener('load', function () {
  var problems = [];
  var imgs = Array.from(document.images);
  imgs.forEach(function (img, i) {
    if (!img.complete || img.naturalWidth === 0) problems.push('image ' + i + ' (' + img.alt + ') did not render');
  });
  var links = Array.from(document.querySelectorAll('a[href]'));
  links.forEach(function (a) {
    var h = a.getAttribute('href');
    if (h.charAt(0) !== '#') { problems.push('link leaves the page: ' + h); return; }
    if (!document.getElementById(decodeURIComponent(h.slice(1)))) problems.push('broken anchor ' + h);
  });
  var out = document.createElement('pre');
  out.id = 'browser-check-result';
  out.textContent = JSON.stringify({images: imgs.length, links: links.length,
                                    title: document.title, problems: problems});
  document.body.appendChild(out);
});
</script>
"""

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--virtual-time-budget=10000"]


def find_chromium() -> str | None:
    for cand in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def check_in_browser(page: Path, chromium: str, timeout: float = 120) -> dict:
    """Run the in-page check in headless Chromium; returns ``{"images", "links", "problems", ...}``."""
    text = page.read_text(encoding="utf-8")
    if "</body>" not in text:
        raise ValueError(f"{page} has no </body>: not a complete HTML page")
    with tempfile.TemporaryDirectory(prefix="report-check-") as tmp:
        probe = Path(tmp) / "page.html"
        probe.write_text(text.replace("</body>", CHECK_SCRIPT + "</body>", 1), encoding="utf-8")
        profile = Path(tmp) / "profile"
        cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", probe.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    m = re.search(r'<pre id="browser-check-result">(.*?)</pre>', proc.stdout, re.S)
    if not m:
        raise RuntimeError(f"Chromium returned no verdict (exit {proc.returncode}); stderr tail: "
                           f"{proc.stderr[-800:]}")
    import html

    return json.loads(html.unescape(m.group(1)))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    page = Path(argv[0] if argv else "reports/index.html")
    if not page.is_file():
        print(f"error: no page at {page}; build it with `python -m workbench report --out {page.parent}/`",
              file=sys.stderr)
        return 2
    chromium = find_chromium()
    if chromium is None:
        print("error: no Chromium found; install the Debian package (`apt-get install -y chromium`) "
              "or set CHROMIUM=/path/to/chrome", file=sys.stderr)
        return 2
    verdict = check_in_browser(page, chromium)
    print(f"{page}: loaded in {Path(chromium).name} ({verdict['title']!r}): {verdict['images']} images, "
          f"{verdict['links']} links")
    for p in verdict["problems"]:
        print(f"  PROBLEM: {p}")
    if verdict["images"] == 0:
        print("  PROBLEM: the page has no images")
        return 1
    return 1 if verdict["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
