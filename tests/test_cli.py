import json
import os
import subprocess
import sys

import pytest

from aipic.common.data import REPO_ROOT
from aipic.cli import main
from conftest import image_file


def run_cli(*args, home):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "AIPIC_HOME": str(home), "AIPIC_MODELS": "tiny"}
    return subprocess.run([sys.executable, "-m", "aipic", *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)


@pytest.mark.slow
def test_generate_then_verify_in_separate_processes(tmp_path):
    made = run_cli("generate", "a photo of a baker", "--seed", "4", "--json", home=tmp_path)
    assert made.returncode == 0, made.stderr
    [output] = json.loads(made.stdout)["outputs"]
    assert output["seed"] == 4 and "person_present" in output["audit"]

    checked = run_cli("verify", output["path"], home=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "Verdict: TRUSTED" in checked.stdout and "a photo of a baker" in checked.stdout


@pytest.mark.slow
def test_bad_input_is_one_clear_line_not_a_traceback(tmp_path):
    result = run_cli("generate", "a cat", "--width", "100", home=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "aipic: error: Width must be a multiple of 8 (got 100); try 96 or 104."
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_verify_reports_each_kind_of_bad_file(tmp_path, capsys):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    plain = image_file(tmp_path / "plain.png")
    code = main(["verify", str(garbage), str(text), str(plain), str(tmp_path / "missing.png"), "--home", str(tmp_path), "--json"])
    assert code == 1
    verdicts = {os.path.basename(path): result["verdict"] for path, result in json.loads(capsys.readouterr().out).items()}
    assert verdicts == {"garbage.png": "unreadable", "notes.txt": "unreadable", "plain.png": "no_credentials", "missing.png": "unreadable"}


@pytest.mark.slow
def test_img2img_and_style_commands(tmp_path, capsys):
    init = image_file(tmp_path / "init.png", 64, 64)
    common = ["--models", "tiny", "--home", str(tmp_path), "--json"]
    assert main(["img2img", str(init), "make it blue", "--seed", "1", "--width", "64", "--height", "64", *common]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"][0]["width"] == 64
    assert main(["style", str(init), str(init), "--steps", "2", "--size", "64", *common]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"][0]["path"].endswith(".png")
    assert main(["img2img", str(tmp_path / "nope.png"), "x", *common]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_audit_command_writes_a_report(tmp_path, capsys):
    code = main(["audit", "--suite", str(REPO_ROOT / "audits/suites/smoke.yaml"), "--seeds", "1", "--out", str(tmp_path / "r"), "--models", "tiny", "--home", str(tmp_path), "--no-progress"])
    assert code == 0
    assert "HTML report" in capsys.readouterr().out
    assert (tmp_path / "r" / "report.html").is_file() and (tmp_path / "r" / "rows.csv").is_file()


def test_models_lists_the_catalog(capsys):
    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["catalog"]["text_to_image"]["sd-turbo"]["default"] is True


@pytest.mark.parametrize("argv", [["generate"], ["frobnicate"]])
def test_argument_errors_exit_2(argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def test_unexpected_failures_are_one_line(monkeypatch, tmp_path, capsys):
    from aipic import pipeline

    def broken(self, request, model_key=None, author=None):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(pipeline.AipicPipeline, "text_to_image", broken)
    monkeypatch.delenv("AIPIC_DEBUG", raising=False)
    assert main(["generate", "a cat", "--models", "tiny", "--home", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == "aipic: unexpected error (RuntimeError): CUDA out of memory. Set AIPIC_DEBUG=1 for details."


def test_download_offline_says_plainly_there_is_no_network(capsys, monkeypatch):
    assert main(["download"]) == 4  # HF_HUB_OFFLINE is set for the tests
    err = capsys.readouterr().err
    assert err.startswith("aipic: error: No network:") and "Traceback" not in err
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: a real connection failure
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "2")
    assert main(["download"]) == 4
    last = capsys.readouterr().err.strip().splitlines()[-1]  # the hub client logs its retries before
    assert last.startswith("aipic: error: No network: the model hub could not be reached"), last


@pytest.mark.slow
def test_private_prompt_round_trip_through_the_cli(tmp_path, capsys):
    assert main(["generate", "a secret harbour at dawn", "--private-prompt", "--seed", "3", "--width", "64", "--height", "64", "--models", "tiny", "--home", str(tmp_path), "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    path, salt = made["outputs"][0]["path"], made["prompt_salt"]
    assert main(["verify", path, "--home", str(tmp_path), "--prompt", "a secret harbour at dawn", "--salt", salt]) == 0
    assert "private prompt: MATCHES" in capsys.readouterr().out
    main(["verify", path, "--home", str(tmp_path), "--prompt", "another prompt", "--salt", salt])
    assert "does NOT match" in capsys.readouterr().out
    assert main(["verify", path, "--home", str(tmp_path), "--prompt", "x"]) == 2


def test_ctrl_c_during_an_audit_exits_130_with_a_partial_report(tmp_path, monkeypatch, capsys):

    from conftest import interrupt_on

    from aipic.pipeline.jobs import JobBuilder

    monkeypatch.setattr(JobBuilder, "text_to_image", interrupt_on(2, JobBuilder.text_to_image))
    code = main(["audit", "--suite", "audits/suites/smoke.yaml", "--seeds", "2", "--out", str(tmp_path / "r"), "--models", "tiny", "--home", str(tmp_path), "--no-progress"])
    assert code == 130
    assert "Interrupted" in capsys.readouterr().err
    assert json.loads((tmp_path / "r" / "report.json").read_text())["complete"] is False
