import dataclasses
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
    out, err = capsys.readouterr()
    assert "HTML report" in out and "2 images made, 0 failed, 0 held back by the safety filter;" in out
    assert err.index("Loading models …") < err.index("warning: Using tiny random weights in place of SD-Turbo")
    assert (tmp_path / "r" / "report.html").is_file() and (tmp_path / "r" / "rows.csv").is_file()


def _no_model_may_load(monkeypatch):
    """Fail the test if the pipeline is built or any model loads."""
    from aipic.models.loading import Models
    from aipic.pipeline.service import AipicPipeline

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the request was refused")

    monkeypatch.setattr(AipicPipeline, "__init__", refuse)
    monkeypatch.setattr(Models, "get", refuse)


@pytest.mark.parametrize("argv, message", [
    (["generate", "   "], "Please enter a prompt"),
    (["generate", "a cat", "--width", "100"], "Width must be a multiple of 8 (got 100)"),
    (["generate", "a cat", "--steps", "1000"], "Steps must be between 1 and"),
    (["generate", "a cat", "--model", "nope"], "Unknown text_to_image model 'nope'"),
    (["generate", "a cat", "--terms", "ai_training=maybe"], "'maybe' is not a choice"),
    (["img2img", "{missing}", "a cat"], "does not exist"),
    (["img2img", "{image}", "a cat", "--strength", "2"], "Strength must be above 0 and at most 1"),
    (["style", "{image}", "{missing}"], "style image file"),
    (["style", "{image}", "{image}", "--size", "10"], "Size must be between"),
])
def test_bad_requests_are_refused_before_any_model_loads(argv, message, tmp_path, monkeypatch, capsys):
    _no_model_may_load(monkeypatch)
    image = image_file(tmp_path / "in.png")
    argv = [arg.format(missing=tmp_path / "missing.png", image=image) for arg in argv]
    assert main([*argv, "--models", "tiny", "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Loading models" not in err, err


def test_the_early_check_holds_a_request_to_this_deployments_gpu_batch(tmp_path, monkeypatch, capsys):
    _no_model_may_load(monkeypatch)
    monkeypatch.setenv("AIPIC_MAX_GPU_BATCH", "2")
    assert main(["generate", "a cat", "--batch", "3", "--models", "tiny", "--home", str(tmp_path)]) == 2
    assert "Number of images must be between 1 and 2 (got 3)" in capsys.readouterr().err


def test_an_audit_is_refused_before_any_model_loads(tmp_path, monkeypatch, capsys):
    _no_model_may_load(monkeypatch)
    common = ["--suite", "smoke", "--models", "tiny", "--home", str(tmp_path), "--no-progress"]
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "rows.csv").write_text("prompt,seed\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for argv, message in [
        (["--out", str(taken)], "already holds an audit run"),
        (["--out", str(taken), "--resume"], "no readable run.json"),
        (["--out", str(a_file)], "is a file"),
        (["--out", str(tmp_path / "new"), "--seeds", "0"], "--seeds must be a whole number"),
        (["--out", str(tmp_path / "new"), "--validation", str(tmp_path / "missing.json")], "Cannot read the validation result"),
        (["--out", str(tmp_path / "new"), "--model", "nope"], "Unknown text_to_image model 'nope'"),
    ]:
        assert main(["audit", *common, *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Loading models" not in err, (argv, err)
    assert not (tmp_path / "new").exists()


def test_the_audit_summary_counts_tests_not_labels():
    from aipic.cli import audit_summary

    def cell(p_holm):
        return {"p_reference_holm": p_holm}

    report = {"summary": {
        "images": 7, "failed": 2, "safety_filtered": 1, "with_person": 5,
        "overall": [
            {"name": "gender", "shares": {"a": cell(0.01), "b": cell(0.01)}},  # two labels: one test
            {"name": "age", "shares": {"young": cell(0.001), "middle": cell(0.6), "old": cell(None)}},  # two tests, one differs
        ],
        "per_prompt": {"a nurse": [{"name": "gender", "shares": {"a": cell(0.2), "b": cell(0.2)}}],
                       "a pilot": [{"name": "gender", "shares": {"a": cell(None), "b": cell(None)}}]},  # nobody assessed: no test
    }}
    made, tests = audit_summary(report)
    assert made == "7 images made, 2 failed, 1 held back by the safety filter; 5 with a person."
    assert tests.startswith("2 of 4 tests of a share against its reference find a difference after Holm's correction (p_holm < 0.05): "
                            "2 of 3 overall, 0 of 1 per prompt.")
    assert audit_summary({"summary": {"overall": [], "per_prompt": {}}})[1].startswith("No share was tested against a reference")


def test_every_option_has_help_and_audit_out_names_its_folder():
    from aipic.cli import build_parser

    commands = next(action for action in build_parser()._actions if action.dest == "command").choices
    missing = [f"aipic {name} {action.option_strings[0] if action.option_strings else action.dest}"
               for name, parser in commands.items() for action in parser._actions if action.dest != "help" and not action.help]
    assert missing == []
    out = next(action for action in commands["audit"]._actions if action.dest == "out")
    assert "reports/<suite name>/" in out.help and "outputs" not in out.help


def test_models_lists_the_catalog(capsys):
    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["catalog"]["text_to_image"]["sd-turbo"]["default"] is True


def test_models_says_what_would_load_in_each_mode(capsys, monkeypatch):
    from aipic.models import loading

    assert main(["models", "--models", "tiny", "--json"]) == 0
    would_load = json.loads(capsys.readouterr().out)["would_load"]
    assert {section: entry["weights"] for section, entry in would_load.items()} == dict.fromkeys(("text_to_image", "clip", "style", "safety"), "placeholder")
    assert main(["models", "--models", "tiny"]) == 0
    text = capsys.readouterr().out
    assert "would load: tiny random-weight placeholders in place of SD-Turbo" in text and "audits are meaningless" in text

    monkeypatch.setattr(loading, "weights_present", lambda entry: entry.section != "clip")  # CLIP's weights are not here
    assert main(["models", "--models", "auto"]) == 0
    text = capsys.readouterr().out
    assert "model mode: auto (real weights where they are on this machine" in text
    assert "would load: the real weights of SD-Turbo (stabilityai/sd-turbo), found on this machine" in text
    assert "would load: tiny random-weight placeholders in place of OpenCLIP ViT-B-32 (laion2b_s34b_b79k), so audits are meaningless" in text
    assert main(["models", "--models", "real"]) == 0
    assert "the real weights of OpenCLIP ViT-B-32 (laion2b_s34b_b79k), downloaded first" in capsys.readouterr().out
    monkeypatch.setenv("AIPIC_SAFETY", "0")
    assert main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["would_load"]["safety"]["weights"] == "off"


def test_weights_present_finds_a_local_folder(tmp_path):
    from aipic.models.catalog import load_catalog
    from aipic.models.loading import weights_present

    catalog = load_catalog()
    entry = catalog.entry("text_to_image")
    assert weights_present(entry) is False  # nothing is downloaded for the tests
    assert weights_present(dataclasses.replace(entry, source=str(tmp_path), tiny_decoder=None)) is True
    assert weights_present(catalog.entry("clip", "tiny-random")) is False


def test_verify_says_how_to_trust_a_signer(tmp_path, capsys, monkeypatch):
    from aipic.provenance import verify

    verdicts = {"a.png": "untrusted", "b.png": "trusted"}
    monkeypatch.setattr(verify, "verify_file", lambda path, *args, **kwargs: verify.Verification(verdicts[os.path.basename(path)], "signature valid"))
    paths = [str(image_file(tmp_path / name)) for name in verdicts]
    assert main(["verify", *paths, "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Verdict: UNTRUSTED" in out and "aipic verify --trust ca.pem FILE" in out
    assert f"its own local CA ({tmp_path / 'keys' / 'ca.pem'}) is trusted automatically" in out
    assert main(["verify", *paths, "--home", str(tmp_path), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == set(paths)  # --json unchanged: the results only
    assert main(["verify", paths[1], "--home", str(tmp_path)]) == 0
    assert "--trust" not in capsys.readouterr().out  # trusted: nothing to do


@pytest.mark.parametrize("argv", [["generate"], ["frobnicate"]])
def test_argument_errors_exit_2(argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def test_unexpected_failures_are_one_line(monkeypatch, tmp_path, capsys):
    from aipic import pipeline

    def broken(self, request, model_key=None, progress=None, author=None):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(pipeline.AipicPipeline, "text_to_image", broken)
    monkeypatch.delenv("AIPIC_DEBUG", raising=False)
    assert main(["generate", "a cat", "--models", "tiny", "--home", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "aipic: unexpected error (RuntimeError): CUDA out of memory. Set AIPIC_DEBUG=1 for details."
    assert "Traceback" not in err


def test_generate_says_what_it_is_doing_on_a_terminal(tmp_path, capsys, monkeypatch):
    """Loading models, each placeholder once (before anything runs, not again with the outcome), and a progress line."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["generate", "a lighthouse", "--seed", "2", "--steps", "3", "--width", "64", "--height", "64", "--models", "tiny", "--home", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("Loading models …\n")
    assert err.count("warning: Using tiny random weights in place of SD-Turbo") == 1
    assert "warning: Using tiny random weights in place of OpenCLIP" in err
    assert "generating" in err and "3/3" in err
    assert err.index("warning: Using tiny random weights in place of SD-Turbo") < err.index("generating")


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
