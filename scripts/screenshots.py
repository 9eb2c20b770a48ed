"""Take screenshots of the main pages with headless Chromium (Debian's) through Playwright.

    .venv/bin/python scripts/screenshots.py http://127.0.0.1:8000 docs/screenshots

Logs in as the demo board member; writes one PNG per page and prints any
JavaScript console errors (non-zero exit if there were some).
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main(base: str, out: Path, user: str = "board", pages: list[str] | None = None) -> int:
    out.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/login/")
        page.fill("#id_username", user)
        page.fill("#id_password", f"charter-{user}-demo")
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")
        for name, path in [
            ("dashboard", "/"),
            ("inventory", "/use-cases/"),
            *[(p.strip("/").replace("/", "-"), p) for p in pages or []],
        ]:
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            print(f"{name}: {out / (name + '.png')}")
        browser.close()
    for e in errors:
        print("console error:", e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    who = "board"
    if args and args[0].startswith("--user="):
        who = args.pop(0).split("=", 1)[1]
    sys.exit(main(args[0], Path(args[1]), user=who, pages=args[2:]))
