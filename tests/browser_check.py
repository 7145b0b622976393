"""Open every page of a built book in headless Chromium and check what a reader would see.

Checks: every page loads; every image has loaded with a non-zero natural size; every internal link points to an
existing page and, where it names a fragment, to an existing anchor; no page shows a Python traceback; every formula
is rendered by MathJax (and the methods page has formulas); no page requests anything from the network; no rendered
table cell or paragraph shows a raw pipe-table rule (``|---``: markdown displayed as text, not as a table); every
figure of a page's content is at least 300 px wide and not blank (one colour); each conclusion chapter
(:data:`CONCLUSION_PAGES`) shows its "Finding" admonition. One full-page screenshot per page is saved under the build
folder (``<build>/screenshots/<page>.png``) for a reader to review. Chromium
runs with the network off (every host name but 127.0.0.1 resolves to nothing), so a page that needed a CDN (MathJax,
fonts, scripts) fails here as it would for an offline reader.
Usage: ``python tests/browser_check.py BUILD_HTML_DIR``. Prints one line per problem and a closing count line.
"""

from __future__ import annotations

import functools
import http.server
import re
import socketserver
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

SKIP = {"genindex.html", "search.html", "py-modindex.html"}
#: A page that only forwards the reader (Jupyter Book writes the root ``index.html`` as one). It is not opened in the
#: browser: the refresh may fire while the page is being inspected, and what is read then belongs to the target page
#: under the redirect's name. Its target is checked as a link instead.
REDIRECT = re.compile(r"""<meta\s+http-equiv=["']refresh["']\s+content=["']\d+;\s*url=([^"']+)["']""", re.IGNORECASE)
JS = """
const imgs = Array.from(document.images).map(i => [i.currentSrc || i.src, i.complete, i.naturalWidth, i.naturalHeight]);
const links = Array.from(document.querySelectorAll('a[href]')).map(a => a.href);
const ids = Array.from(document.querySelectorAll('[id]')).map(e => e.id);
const text = document.body ? document.body.innerText : '';
return [imgs, links, ids, text.includes('Traceback (most recent call last)'), document.title];
"""


#: Runs after a page has loaded: waits (up to 15 s) for MathJax to typeset, then counts the formulas of the page
#: (Sphinx marks them ``.math``), the rendered ones (MathJax 3 output ``mjx-container``) and MathJax errors.
MATH_JS = """
const done = arguments[arguments.length - 1];
const formulas = document.querySelectorAll('.math').length;
if (!formulas) { done([0, 0, 0]); return; }
const count = () => [formulas, document.querySelectorAll('mjx-container').length,
                     document.querySelectorAll('mjx-merror').length];
const started = Date.now();
const poll = () => {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) { mj.startup.promise.then(() => done(count()), () => done(count())); }
  else if (Date.now() - started > 15000) { done(count()); }
  else { setTimeout(poll, 100); }
};
poll();
"""
#: Every request of the page that did not go to the local server.
EXTERNAL_JS = """
return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(arguments[0]));
"""
#: What a reader sees as text where markdown was displayed raw: a pipe-table rule in a cell, paragraph or item.
RAW_TABLE_JS = """
const scope = document.querySelector('article') || document.body;
return Array.from(scope.querySelectorAll('td, th, p, li')).filter(e => !e.closest('pre, code'))
  .map(e => e.innerText).filter(t => t.includes('|---')).map(t => t.slice(0, 80));
"""
#: The figures of the page's content (not the theme's icons) and the titles of its admonitions.
CONTENT_JS = """
const scope = document.querySelector('article') || document.body;
const figures = Array.from(scope.querySelectorAll('img')).map(i => [i.currentSrc || i.src, i.naturalWidth]);
const titles = Array.from(scope.querySelectorAll('.admonition .admonition-title')).map(t => t.innerText.trim());
return [figures, titles, Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)];
"""
#: The chapters that open with a finding box (their executed notebooks' names).
CONCLUSION_PAGES = ("04_stratification", "05_reversals", "06_bootstrap", "08_cross_dataset", "09_failure_modes",
                    "10_small_data")
#: The title of a chapter's finding box (helpers.report.findings.FINDING_TITLE).
FINDING_TITLE = "Finding"
#: The narrowest figure a reader can read at the book's width, in pixels.
MIN_FIGURE_WIDTH = 300
#: The tallest full-page screenshot (pixels; a longer page is cut there).
MAX_SCREENSHOT_HEIGHT = 20000
#: The page whose formulas must render (a page without formulas would let a broken MathJax pass unseen).
METHODS_PAGE = "book/methods.html"


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
                 # the network off: no host name resolves except the local server's address
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    browser.set_script_timeout(30)
    return browser


def figure_problems(path: Path, *, min_width: int = MIN_FIGURE_WIDTH) -> list[str]:
    """What is wrong with a figure file a page shows: narrower than ``min_width`` pixels, or blank (every pixel the
    same colour). Read from the file (the same image the browser loaded)."""
    from PIL import Image  # Pillow comes with matplotlib

    with Image.open(path) as image:
        width, height = image.size
        extrema = image.convert("RGB").getextrema()
    problems = []
    if width < min_width:
        problems.append(f"{width} px wide (< {min_width})")
    if all(low == high for low, high in extrema):
        problems.append("blank (one colour)")
    return problems


def is_conclusion_page(page: str) -> bool:
    """Whether ``page`` (a path of the built book) is a chapter that must open with its finding box."""
    return Path(page).stem in CONCLUSION_PAGES


def screenshot(browser, height: int, path: Path) -> None:
    """A full-page screenshot of the page open in ``browser`` (``height``: the page's height in pixels)."""
    width = browser.get_window_size()["width"]
    browser.set_window_size(width, min(max(height, 600), MAX_SCREENSHOT_HEIGHT))
    path.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(path))
    browser.set_window_size(width, 900)


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
    n_formulas = 0
    formulas_on: dict[str, int] = {}
    shots = root.parent / "screenshots"
    n_shots = 0
    browser = driver()
    browser.set_window_size(1280, 900)
    try:
        for page in pages:
            redirect = REDIRECT.search((root / page).read_text(encoding="utf-8", errors="replace"))
            if redirect:
                links.append((page, redirect.group(1)))
                continue
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
            formulas, rendered, errors = browser.execute_async_script(MATH_JS)
            formulas_on[page] = rendered
            n_formulas += rendered
            if rendered < formulas:
                problems.append(f"{page}: {formulas - rendered} of {formulas} formulas not rendered by MathJax")
            if errors:
                problems.append(f"{page}: {errors} MathJax errors")
            for url in browser.execute_script(EXTERNAL_JS, base):
                problems.append(f"{page}: requests {url} from the network (everything must come from the book)")
            for text in browser.execute_script(RAW_TABLE_JS):
                problems.append(f"{page}: shows a raw pipe table as text ({text!r}): display it as Markdown")
            figures, titles, height = browser.execute_script(CONTENT_JS)
            for src, width in figures:
                target = urlparse(urldefrag(src)[0])
                local = root / unquote(target.path[1:]) if src.startswith(base) else None
                if local is not None and local.is_file():
                    for issue in figure_problems(local):
                        problems.append(f"{page}: figure {local.name} is {issue}")
                elif width and width < MIN_FIGURE_WIDTH:
                    problems.append(f"{page}: figure {src[:60]} is {width} px wide (< {MIN_FIGURE_WIDTH})")
            if is_conclusion_page(page) and FINDING_TITLE not in titles:
                problems.append(f"{page}: no '{FINDING_TITLE}' admonition (a conclusion chapter opens with its "
                                "finding)")
            screenshot(browser, height, shots / (page.removesuffix(".html").replace("/", "__") + ".png"))
            n_shots += 1
            if urldefrag(browser.current_url)[0] != base + page:
                problems.append(f"{page}: the browser left the page for {browser.current_url} while it was checked")
    finally:
        browser.quit()
        server.shutdown()
    if formulas_on.get(METHODS_PAGE, 0) == 0:
        problems.append(f"{METHODS_PAGE}: no formula rendered by MathJax (expected the metric definitions)")
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
    print(f"browser check: {len(pages)} pages, {n_images} images, {n_links} internal links, {n_formulas} formulas "
          f"rendered by MathJax, network off; {n_shots} screenshots in {shots}")
    print(f"{len(pages) - len({p.split(':')[0] for p in problems})} passed, "
          f"{len({p.split(':')[0] for p in problems})} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
