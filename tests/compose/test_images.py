"""What the images hold: product images the product only (no lab code, no pytest), each with
its entry point; the lab host the lab's simulators with theirs.

Builds the images with scripts/build-images.sh (tagged $HEARTH_TAG, default latest; Docker's
cache makes it quick after the first build) and runs each one with ``--entrypoint python``.
Runs only with a reachable Docker engine (skipped with the reason otherwise).
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from hearth_compose import engine_reachable
from hearth_compose.stack import REPO

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1200)]

TAG = os.environ.get("HEARTH_TAG", "latest")
PRODUCT = ("wake", "audio", "ci", "gateway")
PRODUCT_PACKAGES = {
    "hearth", "hearth_runtime", "hearth_client", "hearth_cli",
    "hearth_wake", "hearth_audio", "hearth_ci", "hearth_gateway",
}  # fmt: skip
LAB_PACKAGES = (
    "hearth_lab", "hearth_testing", "hearth_demo", "hearth_compose",
    "hearth_wake_lab", "hearth_audio_lab", "hearth_ci_lab",
)  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def images() -> None:
    reason = engine_reachable()
    if reason:
        pytest.skip(reason)
    names = [*PRODUCT, "labhost"]
    build = subprocess.run(
        [str(REPO / "scripts" / "build-images.sh"), *names],
        capture_output=True,
        text=True,
        timeout=1100,
    )
    assert build.returncode == 0, build.stdout + build.stderr


def python_in(image: str, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python",
         f"hearth-{image}:{TAG}", "-c", code],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("image", PRODUCT)
def test_a_product_image_holds_no_lab_code(image: str) -> None:
    # The literal check: the service's own lab package is not there.
    own = python_in(image, f"import hearth_{image}_lab")
    assert own.returncode != 0
    assert f"ModuleNotFoundError: No module named 'hearth_{image}_lab'" in own.stderr
    # Nor any other lab package, nor pytest; and no file of the lab on disk.
    for package in (*LAB_PACKAGES, "pytest"):
        res = python_in(image, f"import {package}")
        assert res.returncode != 0, f"{package} imports in hearth-{image}"
        assert f"No module named '{package}'" in res.stderr, res.stderr
    # What the virtualenv holds of hearth: the product's packages (and its generated API).
    listing = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh",
         f"hearth-{image}:{TAG}", "-c", "ls /opt/hearth/lib/python3.11/site-packages"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    ours = {n for n in listing if n.startswith("hearth")}
    dists = {n for n in ours if n.endswith(".dist-info")}
    assert ours - dists == PRODUCT_PACKAGES
    assert len(dists) == 1 and re.fullmatch(r"hearth-[\d.]+\.dist-info", dists.pop())
    assert not {"pytest", "_pytest", "hypothesis"} & set(listing)


@pytest.mark.parametrize("image", PRODUCT)
def test_a_product_image_keeps_its_entry_point(image: str) -> None:
    res = python_in(
        image,
        f"import shutil, hearth_{image}.main as m; assert callable(m.main); "
        f"print(shutil.which('hearth-{image}'))",
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"/opt/hearth/bin/hearth-{image}"


def test_the_lab_host_holds_the_simulators_with_their_entry_points() -> None:
    res = python_in(
        "labhost",
        "import shutil, hearth_wake_lab.sleepsim, hearth_ci_lab.replay; "
        "print(shutil.which('hearth-sleepsim'), shutil.which('hearth-ci-replay'))",
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [
        "/opt/hearth/bin/hearth-sleepsim",
        "/opt/hearth/bin/hearth-ci-replay",
    ]
    helps = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", f"hearth-labhost:{TAG}",
         "hearth-ci-replay", "--help"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert helps.returncode == 0 and "--fixtures" in helps.stdout, helps.stderr
