import pytest
"""A built wheel carries the catalog and the audit data: a non-editable install works from anywhere."""

import os
import subprocess
import sys

from aipic.common.data import REPO_ROOT


@pytest.mark.slow
def test_the_wheel_carries_models_and_audits(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(REPO_ROOT), "-w", str(wheels)],
                   check=True, capture_output=True, cwd=tmp_path, timeout=300)
    [wheel] = list(wheels.glob("aipic-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    assert (target / "aipic" / "_data" / "models" / "catalog.yaml").is_file()
    assert (target / "aipic" / "_data" / "audits" / "suites" / "smoke.yaml").is_file()
    assert (target / "aipic" / "provenance" / "migrations" / "versions" / "0003_output_paths.py").is_file()  # the registry schema
    assert (target / "aipic" / "_data" / "audits" / "references" / "bls_cps_2025_occupations.tsv").is_file()
    assert (target / "aipic" / "_data" / "audits" / "references" / "fitzpatrick17k_skin_types.tsv").is_file()
    assert (target / "aipic" / "_data" / "audits" / "suites" / "clinical.yaml").is_file()

    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    code = ("import aipic, aipic.models.catalog, aipic.audit.attributes, aipic.audit.suites; print(aipic.__file__); print(aipic.models.catalog.DEFAULT_CATALOG_PATH); "
            "print(aipic.audit.attributes.load_attribute_set().name); print(aipic.audit.suites.load_suite('audits/suites/smoke.yaml').name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(str(target)) and lines[1].startswith(str(target))
    listing = subprocess.run([sys.executable, "-m", "aipic", "models"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert listing.returncode == 0 and "sd-turbo" in listing.stdout, listing.stderr


def test_dockerfile_compose_and_spaces_front_matter_hold_together():
    """Docker cannot run here: check the files' structure instead of building them."""
    import re

    import yaml

    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    instructions = [line.split()[0] for line in dockerfile.splitlines() if line and not line.startswith("#") and not line.startswith(" ")]
    assert instructions[0] == "FROM" and "nvidia/cuda" in dockerfile.splitlines()[[i for i, l in enumerate(dockerfile.splitlines()) if l.startswith("FROM")][0]]
    for line in dockerfile.splitlines():
        if line.startswith("COPY"):
            for source in line.split()[1:-1]:
                assert (REPO_ROOT / source).exists(), source
    port = re.search(r"GRADIO_SERVER_PORT=(\d+)", dockerfile).group(1)
    assert f"EXPOSE {port}" in dockerfile and 'CMD ["/venv/bin/python", "app.py"]' in dockerfile

    compose = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    app, db = compose["services"]["app"], compose["services"]["db"]
    assert f"{port}:{port}" in app["ports"]
    assert "@db:5432/" in app["environment"]["AIPIC_REGISTRY_URL"] and db["image"].startswith("postgres:")
    assert app["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]

    readme = (REPO_ROOT / "README.md").read_text()
    front = yaml.safe_load(readme.split("---")[1])
    assert front["sdk"] == "gradio" and (REPO_ROOT / front["app_file"]).is_file()
    pinned = re.search(r"^gradio==(\S+)$", (REPO_ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert front["sdk_version"] == pinned


def test_building_the_app_writes_nothing_into_the_source_tree(tiny_pipeline):
    """Gradio writes a .pyi stub next to any module that subclasses one of its components; aipic must not (a
    read-only install would fail, and a checkout would get stray files)."""
    import app
    from aipic.common.data import REPO_ROOT
    from aipic.web.ratelimit import RateLimiter

    app.build_app(tiny_pipeline, RateLimiter(0))
    assert not list(REPO_ROOT.glob("*.pyi")) and not list((REPO_ROOT / "aipic").glob("*.pyi"))


def test_the_claim_generator_version_is_the_package_version():
    import tomllib

    import aipic
    from aipic.common.data import REPO_ROOT

    assert aipic.__version__ == tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
