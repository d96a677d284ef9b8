"""Every kind of report opened in a real browser (headless Chromium): its images load and
are a size a person can read.

Chromium is the Debian package ``chromium`` (``make test`` installs it when it can); where
it is absent the test is skipped, saying so. The page is checked as a browser renders it:
a script added to a copy of ``report.html`` records, once the page has loaded, each
``<img>``'s decoded size (``naturalWidth`` x ``naturalHeight``: 0 for an image that failed
to load) and its width on the page, and ``--dump-dom`` hands the result back.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import crowdsteer
from crowdsteer.report.html import write_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
BROWSER = next((b for b in map(shutil.which, BROWSERS) if b), None)

pytestmark = pytest.mark.skipif(BROWSER is None, reason="no headless Chromium here (Debian: "
                                "apt-get install chromium; make test does it as root)")

PROBE = """<script>
window.addEventListener("load", () => {
  const sizes = [...document.images].map(i => ({alt: i.alt, complete: i.complete,
    natural: [i.naturalWidth, i.naturalHeight], shown: [i.width, i.height]}));
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(sizes);
  document.body.appendChild(out);
});
</script>"""


def images_in_browser(report: Path, tmp: Path) -> list[dict]:
    """The ``<img>`` sizes Chromium sees in ``report`` (a probed copy of it)."""
    page = tmp / "probed.html"
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                    encoding="utf-8")
    r = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu",
                        "--window-size=1280,900", "--virtual-time-budget=10000",
                        f"--user-data-dir={tmp / 'profile'}", "--dump-dom", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout, re.S)
    assert found, f"the probe did not run: {r.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


GRID = {"seed": 0,
        "game": {"name": "crowd", "height": 6, "width": 7, "horizon": 2, "moves": "local",
                 "desirability": {"bumps": [{"center": [1, 1], "height": 1.0, "width": 1.5}]},
                 "congestion": {"kind": "log", "strength": 1.0}},
        "learner": {"name": "exact", "temperature": 0.3},
        "modifier": {"name": "power_series", "order": 1, "bounds": [-2, 2]},
        "objective": {"name": "kl", "target": {"bumps": [{"center": [4, 5], "height": 1.0,
                                                          "width": 1.0}]}},
        "optimiser": {"name": "random", "evaluations": 3}}
MATRIX = {"seed": 0, "game": {"name": "matrix", "preset": "prisoners_dilemma"},
          "learner": {"name": "exact", "temperature": 0.1},
          "modifier": {"name": "transfers", "bounds": [-3, 3]},
          "objective": {"name": "welfare"}, "optimiser": {"name": "random", "evaluations": 3}}
BRAESS = Path(__file__).resolve().parents[1] / "examples" / "braess.yaml"


def braess() -> dict:
    cfg = crowdsteer.load_config(BRAESS).resolved()
    cfg["optimiser"] = {"name": "random", "evaluations": 3}
    return cfg


def _user_run(out: Path) -> None:
    def evaluate(w, seed):
        return crowdsteer.Outcome(objective=float(((w - 0.3) ** 2).sum()),
                                  diagnostics={"loss": float(w[0])})

    crowdsteer.optimise(evaluate, 3, optimiser={"name": "random", "evaluations": 4}, out=out)


@pytest.mark.parametrize("kind", ["grid", "matrix", "braess", "user"])
def test_every_report_loads_its_images_at_a_readable_size(kind, tmp_path):
    out = tmp_path / "run"
    if kind == "user":
        _user_run(out)
    else:
        crowdsteer.run({"grid": GRID, "matrix": MATRIX}.get(kind) or braess(), out)
    report = write_report(out)
    images = images_in_browser(report, tmp_path)
    expected = {"grid": 6, "matrix": 4, "braess": 4, "user": 2}[kind]
    assert len(images) >= expected, [i["alt"] for i in images]
    for image in images:
        (w, h), (shown_w, shown_h) = image["natural"], image["shown"]
        assert image["complete"] and w > 0 and h > 0, f"{image['alt']} did not load"
        # readable: at least 300 px wide as drawn, and shown at least 250 px wide
        assert w >= 300 and h >= 150, (image["alt"], w, h)
        assert shown_w >= 250 and shown_h >= 100, (image["alt"], shown_w, shown_h)
        assert shown_w <= 1100  # fits the page's column (max-width 1100 px)
    if kind == "grid":  # the heat maps of a 6 x 7 grid are not thin strips
        maps = [i for i in images if i["alt"] == "heat maps of the distributions"]
        assert maps and maps[0]["natural"][1] > maps[0]["natural"][0] / 2
