"""Open every page of a built book in headless Chromium and check what a reader would see.

Checks: every page loads; every image has loaded with a non-zero natural size; every internal link points to an
existing page and, where it names a fragment, to an existing anchor; no page shows a Python traceback.
Usage: ``python tests/browser_check.py BUILD_HTML_DIR``. Prints one line per problem and a closing count line.
"""

from __future__ import annotations

import functools
import http.server
import socketserver
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

SKIP = {"genindex.html", "search.html", "py-modindex.html"}
JS = """
const imgs = Array.from(document.images).map(i => [i.currentSrc || i.src, i.complete, i.naturalWidth, i.naturalHeight]);
const links = Array.from(document.querySelectorAll('a[href]')).map(a => a.href);
const ids = Array.from(document.querySelectorAll('[id]')).map(e => e.id);
const text = document.body ? document.body.innerText : '';
return [imgs, links, ids, text.includes('Traceback (most recent call last)'), document.title];
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # one line per request would drown the report
        pass


def serve(root: Path):
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = socketserver.TCPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def driver() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[1]).resolve()
    if not (root / "index.html").exists():
        print(f"browser check: {root}/index.html not found: build the book first", file=sys.stderr)
        return 2
    pages = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                   if p.name not in SKIP and "_static" not in p.parts and "_sources" not in p.parts)
    server = serve(root)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    problems: list[str] = []
    anchors: dict[str, set[str]] = {}
    links: list[tuple[str, str]] = []
    n_images = 0
    browser = driver()
    try:
        for page in pages:
            browser.get(base + page)
            images, hrefs, ids, traceback, title = browser.execute_script(JS)
            anchors[page] = set(ids)
            if traceback:
                problems.append(f"{page}: shows a Python traceback")
            if not title:
                problems.append(f"{page}: has no title")
            for src, complete, width, height in images:
                n_images += 1
                if not complete or width == 0 or height == 0:
                    problems.append(f"{page}: image {src} did not load (natural size {width}x{height})")
            links.extend((page, href) for href in hrefs)
    finally:
        browser.quit()
        server.shutdown()
    n_links = 0
    for page, href in links:
        target, fragment = urldefrag(urljoin(base + page, href))
        if not target.startswith(base):
            continue  # external link: not checked (no network here)
        n_links += 1
        rel = unquote(urlparse(target).path[1:]) or "index.html"
        if rel.endswith("/"):
            rel += "index.html"
        path = root / rel
        if not path.exists():
            problems.append(f"{page}: broken link to {rel}")
        elif fragment and rel in anchors and fragment not in anchors[rel]:
            problems.append(f"{page}: link to {rel}#{fragment}: no such anchor")
    for line in problems:
        print(f"browser check: {line}")
    print(f"browser check: {len(pages)} pages, {n_images} images, {n_links} internal links")
    print(f"{len(pages) - len({p.split(':')[0] for p in problems})} passed, "
          f"{len({p.split(':')[0] for p in problems})} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
