"""UI proof: headless Chromium screenshots of a finished stylize-video run's artifacts.

`python -m nst_video.deployments.screenshot [--out docs]` starts `prefect server start` on a free
port (temporary PREFECT_HOME, SQLite), runs `nst video` on 12 frames of the bundled clip
against it, then saves:
- <out>/ui_flow_run.png: /v2/runs/flow-run/<id>?tab=Artifacts (the run's artifact cards)
- <out>/ui_artifact.png: /v2/artifacts/artifact/<id> of the summary (its chunk table)
Needs Debian's `chromium` (apt-get install chromium). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from nst_video.deployments.local_server import start_server, stop

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1400,1000", "--virtual-time-budget=15000",
)  # fmt: skip


def api(url: str, path: str, body: dict | None = None) -> object:
    """GET (or POST `body` as JSON) on the Prefect REST API; -> decoded JSON."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def run_video(env: dict, work: Path) -> None:
    """A small but real stylize-video run (12 frames, 3 chunks) reported to the server."""
    subprocess.run(
        [str(BIN / "nst"), "video", str(REPO_ROOT / "assets/videos/bottles_with_tone.mp4"),
         str(REPO_ROOT / "assets/styles/starry_night.jpg"), "-o", str(work / "bottles.mp4"),
         "--size", "96", "--max-frames", "12", "--chunk-frames", "4", "--overlap", "1",
         "--first-iterations", "60", "--iterations", "10", "--work-dir", str(work / "w"),
         "--json"],
        env=env, check=True,
    )  # fmt: skip


def screenshot(url: str, out: Path, profile: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("chromium not found: apt-get install chromium")
    subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}", url],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    print(f"wrote {out} <- {url}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m nst_video.deployments.screenshot")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nst-ui-") as tmp:
        root = Path(tmp)
        proc, base, env = start_server(root, PREFECT_SERVER_UI_V2_ENABLED="true")
        try:
            run_video(env, root)
            runs = api(f"{base}/api", "/flow_runs/filter", {"sort": "START_TIME_DESC", "limit": 1})
            run_id = runs[0]["id"]
            artifacts = api(
                f"{base}/api",
                "/artifacts/filter",
                {
                    "flow_runs": {"id": {"any_": [run_id]}},
                    "artifacts": {"key": {"any_": ["stylize-summary"]}},
                },
            )
            args.out.mkdir(parents=True, exist_ok=True)
            screenshot(
                f"{base}/v2/runs/flow-run/{run_id}?tab=Artifacts",
                args.out / "ui_flow_run.png",
                root / "profile",
            )
            screenshot(
                f"{base}/v2/artifacts/artifact/{artifacts[0]['id']}",
                args.out / "ui_artifact.png",
                root / "profile",
            )
        finally:
            stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
