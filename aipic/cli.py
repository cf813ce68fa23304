"""The aipic command line: generate, img2img, style, verify, audit, models, download.

Bad input prints one clear line to stderr and exits 2; no tracebacks.
"""

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from aipic.common.data import suite_names
from aipic.common.errors import AipicError, BadInput, ModelUnavailable, StageFailed
from aipic.common.files import write_atomically
from aipic.common.settings import Settings

EXIT_OK, EXIT_FAILED_CHECK, EXIT_USAGE = 0, 1, 2


MODELS_HELP = "auto (default): real weights if present locally, else tiny random ones; real: download if needed; tiny: placeholders"
HOME_HELP = "folder for keys/ and outputs/ (default: $AIPIC_HOME or ~/.aipic)"


def _add_common(parser: argparse.ArgumentParser, out_help: str = "folder for signed outputs (default: <home>/outputs)") -> None:
    parser.add_argument("--models", choices=("auto", "real", "tiny"), default=None, help=MODELS_HELP)
    parser.add_argument("--device", default=None, help="torch device, e.g. cuda or cpu (default: cuda if available)")
    parser.add_argument("--home", default=None, help=HOME_HELP)
    parser.add_argument("--out", default=None, help=out_help)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _add_rights(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("authorship and terms")
    group.add_argument("--author-cert", default=None, help="your X.509 certificate chain (PEM): names you as the author in a signed CAWG identity assertion")
    group.add_argument("--author-key", default=None, help="the private key (PEM) of --author-cert; used only to sign, never stored")
    group.add_argument("--terms", action="append", default=[], metavar="USE=CHOICE",
                       help="training and mining terms, e.g. ai_training=notAllowed (uses: data_mining, ai_inference, ai_training, "
                            "ai_generative_training; choices: allowed, notAllowed, constrained). Default: only generative training not allowed")
    group.add_argument("--constraint", default="", help="what a 'constrained' use means, in your words")
    group.add_argument("--rights", default="", help="your own rights statement, recorded in the manifest")


def _rights_fields(args) -> dict:
    terms = {}
    for item in args.terms:
        use, sep, choice = item.partition("=")
        if not sep:
            raise BadInput(f"--terms {item!r}: write USE=CHOICE, e.g. ai_training=notAllowed.")
        terms[use.strip()] = choice.strip()
    return {"terms": terms or None, "terms_constraint": args.constraint, "rights_statement": args.rights}


def _author(args):
    """The author named by --author-cert/--author-key, checked before any model loads; None: anonymous."""
    if not args.author_cert and not args.author_key:
        return None
    if not (args.author_cert and args.author_key):
        raise BadInput("--author-cert and --author-key go together: your certificate chain and its private key.")
    from aipic.provenance.authorship import load_own_credential

    return load_own_credential(args.author_cert, args.author_key)


def _add_generation(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="what the image should show, in words")
    parser.add_argument("--negative", default="", help="negative prompt")
    parser.add_argument("--seed", type=int, default=-1, help="-1 picks one (recorded in the output)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's own; `aipic models` lists them)")
    parser.add_argument("--guidance", type=float, default=None, help="how closely to follow the prompt: the classifier-free guidance scale (default: the model's own)")
    parser.add_argument("--width", type=int, default=None, help="width in pixels, a multiple of 8 (default: the model's size, or the init image's shape)")
    parser.add_argument("--height", type=int, default=None, help="height in pixels, a multiple of 8 (default: the model's size, or the init image's shape)")
    parser.add_argument("--batch", type=int, default=1, help="how many images to make (default 1); image i uses seed + i")
    parser.add_argument("--model", default=None, help="text_to_image catalog key (see `aipic models`)")
    parser.add_argument("--format", default=None, choices=("png", "jpeg", "webp"), help="output file format (default png); all are signed")
    parser.add_argument("--private-prompt", action="store_true", help="record only a salted hash of the prompt; the salt is printed for you to keep")
    parser.add_argument("--record-upload-names", action="store_true", help="record uploads' file names in the manifest (default: only their role)")
    _add_rights(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aipic", description="Generate and stylise images with a bias audit and signed C2PA provenance on every output.")
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="text-to-image")
    _add_generation(generate)
    _add_common(generate)

    img2img = commands.add_parser("img2img", help="image-to-image from an init image")
    img2img.add_argument("init_image", help="the picture to start from (PNG, JPEG, WebP, GIF, TIFF or BMP)")
    _add_generation(img2img)
    img2img.add_argument("--strength", type=float, default=None, help="0..1: how much to change the init image")
    _add_common(img2img)

    style = commands.add_parser("style", help="neural style transfer (Gatys, VGG features)")
    style.add_argument("content_image", help="the picture whose content is kept")
    style.add_argument("style_image", help="the picture whose style is applied")
    style.add_argument("--steps", type=int, default=100, help="optimisation steps (default 100)")
    style.add_argument("--size", type=int, default=256, help="longest side of the output")
    style.add_argument("--style-weight", type=float, default=1e5, help="how strongly to match the style image (default 1e5)")
    style.add_argument("--content-weight", type=float, default=1.0, help="how strongly to keep the content image (default 1)")
    style.add_argument("--seed", type=int, default=0, help="seed of the optimisation's random start (default 0)")
    style.add_argument("--format", default=None, choices=("png", "jpeg", "webp"), help="output file format (default png); all are signed")
    style.add_argument("--record-upload-names", action="store_true", help="record uploads' file names in the manifest (default: only their role)")
    _add_rights(style)
    _add_common(style)

    verify = commands.add_parser("verify", help="check the Content Credentials of image files")
    verify.add_argument("files", nargs="+", help="image files to check")
    verify.add_argument("--trust", action="append", default=[], help="extra PEM file of trust anchors (repeatable); aipic's local CA is always trusted")
    verify.add_argument("--home", default=None, help="the aipic home whose local CA, identity CA and registry are used (default: $AIPIC_HOME or ~/.aipic)")
    verify.add_argument("--json", action="store_true", help="print machine-readable JSON")
    verify.add_argument("--prompt", default=None, help="with --salt: check that a private prompt's recorded hash is this prompt")
    verify.add_argument("--salt", default=None, help="the salt printed when the output was made with --private-prompt")

    compare = commands.add_parser("audit-compare", help="compare two audit reports: differences with intervals and tests (also: aipic audit compare A B)")
    compare.add_argument("report_a", help="a report folder or its report.json")
    compare.add_argument("report_b", help="the other report folder or its report.json")
    compare.add_argument("--out", default=None, help="a new folder for compare.json and compare.html (nothing is overwritten)")
    compare.add_argument("--shared-prompts", action="store_true", help="when the reports ran different prompts, compare only the prompts both ran (said in the result)")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")

    rescore = commands.add_parser("audit-rescore", help="a new report from a run's stored readings with other thresholds or a validation, without regenerating (also: aipic audit rescore RUN)")
    rescore.add_argument("run", help="the folder of an audit run (rows.csv, report.json, run.json)")
    rescore.add_argument("--out", required=True, help="a new folder for the re-scored report")
    rescore.add_argument("--attributes", default=None, help="attribute set YAML with other thresholds (same classes and phrases); default audits/attributes.yaml")
    rescore.add_argument("--validation", default=None, help="a result of aipic audit validate: also report shares corrected for misclassification")
    rescore.add_argument("--json", action="store_true", help="print the paths written as JSON")

    validate = commands.add_parser("audit-validate", help="the classifier's accuracy, abstentions and calibration on a labelled image set (also: aipic audit validate)")
    validate.add_argument("--images", required=True, help="folder of images")
    validate.add_argument("--labels", required=True, help="CSV: a 'file' column and one column per attribute with the true label")
    validate.add_argument("--attributes", default=None, help="attribute set YAML (default audits/attributes.yaml)")
    validate.add_argument("--out", default=None, help="write the result as JSON here (use it with aipic audit --validation)")
    validate.add_argument("--models", choices=("auto", "real", "tiny"), default=None, help=MODELS_HELP)
    validate.add_argument("--device", default=None, help="torch device, e.g. cuda or cpu (default: cuda if available)")
    validate.add_argument("--home", default=None, help=HOME_HELP)
    validate.add_argument("--json", action="store_true", help="print the result as JSON")

    flips = commands.add_parser("audit-flips", help="how often img2img or style transfer changes perceived attributes (also: aipic audit flips)")
    flips.add_argument("--images", required=True, help="folder of input images")
    flips.add_argument("--task", choices=("img2img", "style"), default="img2img", help="the edit to measure (default img2img)")
    flips.add_argument("--prompt", default="", help="the img2img edit applied to every input")
    flips.add_argument("--style", default=None, help="the style image, for --task style")
    flips.add_argument("--seed", type=int, default=0, help="seed of every edit (default 0)")
    _add_common(flips, out_help="a folder for flips.json and the signed outputs (under images/); default: no flips.json, outputs in <home>/outputs")

    audit = commands.add_parser("audit", help="batch bias-audit report over a prompt suite × seeds")
    audit.add_argument("--suite", default="audits/suites/occupations.yaml", help=f"a prompt suite's YAML file, or a packaged suite's name ({', '.join(suite_names())})")
    audit.add_argument("--seeds", type=int, default=4, help="seeds per prompt (1 to 10,000)")
    audit.add_argument("--seed-rule", choices=("shared", "per-prompt"), default="shared",
                       help="shared: every prompt uses seeds 0..n-1 (paired counterfactuals); per-prompt: no two prompts share a seed")
    audit.add_argument("--model", default=None, help="text_to_image catalog key (default: the catalog's default; see `aipic models`)")
    audit.add_argument("--attributes", default=None, help="attribute set YAML (default audits/attributes.yaml)")
    audit.add_argument("--no-progress", action="store_true", help="no progress bar")
    audit.add_argument("--resume", action="store_true", help="continue the run in --out (same settings), without redoing finished images")
    audit.add_argument("--validation", default=None, help="a result of aipic audit validate: also report shares corrected for misclassification")
    _add_common(audit, out_help="a new folder for the report and its images (default: reports/<suite name>/ under the current folder); "
                                "with --resume, the run to continue")

    models = commands.add_parser("models", help="list the model catalog and what would load")
    models.add_argument("--models", choices=("auto", "real", "tiny"), default=None, help="say what would load in this mode (default: $AIPIC_MODELS or auto)")
    models.add_argument("--json", action="store_true", help="print machine-readable JSON")

    download = commands.add_parser("download", help="fetch the default real weights (needs network)")
    download.add_argument("--trustmark", action="store_true", help="fetch Adobe TrustMark's model files instead (the watermark with AIPIC_WATERMARK_METHOD=trustmark) into AIPIC_TRUSTMARK_MODELS or <home>/models/trustmark")
    download.add_argument("--home", default=None, help="folder for keys/, outputs/ and models/ (default: $AIPIC_HOME or ~/.aipic)")
    return parser


def settings_of(args) -> Settings:
    """The one Settings of this command: the environment, then its options."""
    return Settings.from_env(models_mode=getattr(args, "models", None), device=getattr(args, "device", None), home=Path(args.home) if getattr(args, "home", None) else None)


def _say(line: str) -> None:
    """A line for the person at the terminal, on stderr (stdout stays the command's result)."""
    print(line, file=sys.stderr, flush=True)


def _attribute_set(path):
    from aipic.audit.attributes import DEFAULT_ATTRIBUTES_PATH, load_attribute_set

    return load_attribute_set(path or DEFAULT_ATTRIBUTES_PATH)


def _pipeline(args, attribute_set=None, output_dir=None, settings: Settings | None = None):
    """The pipeline, once "Loading models …" is said: building it and its first models takes seconds (minutes on
    a first download), and everything that can be refused without them has been checked by then."""
    _say("Loading models …")
    # Lazy: the pipeline imports torch and the models, which `aipic verify` and `aipic models` never need.
    from aipic.pipeline import AipicPipeline

    return AipicPipeline(settings or settings_of(args), attribute_set=attribute_set, output_dir=output_dir)


def _load_models(pipeline, section: str, key: str | None = None, warn: bool = True) -> list[str]:
    """Load what a command runs now, while "Loading models …" is on the screen (its own model, the audit's CLIP
    and the safety filter), and warn about any tiny random-weight placeholders among them. Returns the warnings
    (an outcome repeats its model's; they are said once)."""
    model = pipeline.models.get(section, key)
    notes = ([model.note] if model.placeholder and model.note else []) + pipeline.placeholder_notes(sections=("clip", "safety"))
    if warn:
        for note in notes:
            _say(f"warning: {note}")
    return notes


class _StepLine:
    """The job builder's ``progress(done, total)``: one progress line on stderr while a person watches a terminal;
    None (no line) with --json or when stderr is not a terminal."""

    def __init__(self, desc: str):
        self.desc = desc
        self.bar: Any = None

    @classmethod
    def for_args(cls, args, desc: str):
        return cls(desc) if not args.json and sys.stderr.isatty() else None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            # a terminal that reports no size (0 × 0: e.g. under `script`) would hide the bar: tqdm draws none past the last row
            size = shutil.get_terminal_size((80, 24))
            self.bar = tqdm(total=total, desc=self.desc, unit="step", file=sys.stderr, ncols=min(size.columns or 80, 100), nrows=size.lines or 24)
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run_with_progress(args, desc: str, run):
    """``run(progress)``, with a progress line on a terminal, closed before anything else is printed."""
    line = _StepLine.for_args(args, desc)
    try:
        return run(line)
    finally:
        if line is not None:
            line.close()


def _print_outcome(outcome, as_json: bool, said: list[str] | tuple = ()) -> None:
    if as_json:
        print(json.dumps({
            "outputs": [{"path": str(i.path), "seed": i.seed, "width": i.width, "height": i.height, "audit": i.audit.to_dict()} for i in outcome.items],
            "warnings": outcome.warnings,
            "failed": outcome.failed,
            "models": outcome.models,
            **({"prompt_salt": outcome.prompt_salt} if outcome.prompt_salt else {}),
        }, indent=2))
        return
    for warning in outcome.warnings:
        if warning not in said:
            print(f"warning: {warning}", file=sys.stderr)
    if outcome.prompt_salt:
        print(f"Your prompt is recorded only as a salted hash. Keep this salt to prove later that you wrote it: {outcome.prompt_salt}")
    from aipic.provenance.authorship import licence_line

    for model in outcome.models:
        print(f"model: {model.get('label') or model.get('name')} — licence: {licence_line(model.get('license'))}")
    for item in outcome.items:
        print(f"{item.path}  (seed {item.seed}, {item.width}x{item.height}, signed)")
        for line in item.audit.summary().splitlines():
            print(f"  {line}")


def _outcome_exit(outcome) -> int:
    """0 when every image was made (or held back by the safety filter); a stage's code, 1, when some could not
    be finished: the ones that were are printed, signed and recorded."""
    return StageFailed.exit_code if outcome.failed else EXIT_OK


def _generation_request(args, strength=None):
    from aipic.generation.requests import GenerationRequest

    return GenerationRequest(
        prompt=args.prompt, negative_prompt=args.negative, seed=args.seed, steps=args.steps, guidance=args.guidance,
        width=args.width, height=args.height, batch=args.batch, strength=strength, output_format=args.format,
        private_prompt=args.private_prompt, record_upload_names=args.record_upload_names, **_rights_fields(args),
    )


def _request_checks(settings: Settings, section: str, model_key: str | None = None):
    """What a request is held to, known without loading a model: the catalog's limits in this deployment and the
    Models (nothing loaded) that give the model's request defaults; the licence policy applied to the model."""
    from aipic.models import Models, load_catalog
    from aipic.pipeline.resolve import request_limits
    from aipic.provenance.authorship import check_commercial

    catalog = load_catalog()
    models = Models(catalog, settings.models_mode, settings.device)
    entry = models.entry(section, model_key)
    check_commercial(entry.label, entry.license, settings.commercial_use)
    return request_limits(catalog.limits, settings.max_gpu_batch), models


def _check_generation(args, settings: Settings, init_image=None) -> None:
    """Refuse a text-to-image or image-to-image request before any model loads, as the pipeline would after
    loading: every field against the limits and the model's defaults, the init image, the terms and rights
    statement, the licence policy. The pipeline resolves the request again, in the same functions."""
    from aipic.common.images import MIN_INPUT_SIDE, open_user_image
    from aipic.pipeline.resolve import resolve_generation, resolve_rights

    limits, models = _request_checks(settings, "text_to_image", args.model)
    request = _generation_request(args, getattr(args, "strength", None))
    if init_image is not None:
        request = dataclasses.replace(request, init_image=open_user_image(init_image, "init image", limits.max_upload_pixels, MIN_INPUT_SIDE))
    resolve_rights(resolve_generation(request, models.request_defaults(args.model), limits))


def _check_style(request, settings: Settings) -> None:
    """Refuse a style-transfer request before any model loads (see _check_generation)."""
    from aipic.common.images import MIN_INPUT_SIDE, open_user_image
    from aipic.pipeline.resolve import resolve_rights, resolve_style

    limits, _ = _request_checks(settings, "style")
    opened = dataclasses.replace(request, content_image=open_user_image(request.content_image, "content image", limits.max_upload_pixels, MIN_INPUT_SIDE),
                                 style_image=open_user_image(request.style_image, "style image", limits.max_upload_pixels, MIN_INPUT_SIDE))
    resolve_rights(resolve_style(opened, limits))


def cmd_generate(args) -> int:
    author = _author(args)
    settings = settings_of(args)
    _check_generation(args, settings)
    pipeline = _pipeline(args, output_dir=args.out, settings=settings)
    said = _load_models(pipeline, "text_to_image", args.model, warn=not args.json)
    outcome = _run_with_progress(args, "generating", lambda progress: pipeline.text_to_image(_generation_request(args), args.model, progress=progress, author=author))
    _print_outcome(outcome, args.json, said)
    return _outcome_exit(outcome)


def cmd_img2img(args) -> int:
    author = _author(args)
    settings = settings_of(args)
    _check_generation(args, settings, args.init_image)
    pipeline = _pipeline(args, output_dir=args.out, settings=settings)
    said = _load_models(pipeline, "text_to_image", args.model, warn=not args.json)
    outcome = _run_with_progress(args, "generating", lambda progress: pipeline.image_to_image(_generation_request(args, args.strength), args.init_image, args.model,
                                                                                             progress=progress, author=author))
    _print_outcome(outcome, args.json, said)
    return _outcome_exit(outcome)


def cmd_style(args) -> int:
    from aipic.generation.requests import StyleRequest

    request = StyleRequest(content_image=args.content_image, style_image=args.style_image, steps=args.steps, size=args.size, style_weight=args.style_weight, content_weight=args.content_weight, seed=args.seed, output_format=args.format, record_upload_names=args.record_upload_names, **_rights_fields(args))
    author = _author(args)
    settings = settings_of(args)
    _check_style(request, settings)
    pipeline = _pipeline(args, output_dir=args.out, settings=settings)
    said = _load_models(pipeline, "style", warn=not args.json)
    outcome = _run_with_progress(args, "style transfer", lambda progress: pipeline.style_transfer(request, progress=progress, author=author))
    _print_outcome(outcome, args.json, said)
    return _outcome_exit(outcome)


def untrusted_hint(local_ca: Path) -> str:
    """What a person told UNTRUSTED can do about it."""
    return ("UNTRUSTED: the signature is valid, but its signer's certificate authority is not on your trust list. "
            "If you know and trust that signer, pass its CA certificate: aipic verify --trust ca.pem FILE (repeatable). "
            f"Files signed by aipic on this machine need nothing: its own local CA ({local_ca}) is trusted automatically.")


def cmd_verify(args) -> int:
    # Light imports only: verifying never loads torch or the models.
    from aipic.provenance.certificates import check_pem_anchors
    from aipic.provenance.signing_identity import CA_FILE, local_trust_anchors
    from aipic.provenance.trustmark import for_verifying
    from aipic.provenance.verify import verify_file

    settings = settings_of(args)
    anchors = local_trust_anchors(settings.key_dir)
    for path in args.trust:
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise BadInput(f"Cannot read trust anchors {path}: {getattr(error, 'strerror', None) or error}") from None
        anchors.append(check_pem_anchors(text, f"The trust anchor file {path}"))
    if (args.prompt is None) != (args.salt is None):
        raise BadInput("--prompt and --salt go together: the prompt you wrote and the salt printed when the image was made.")
    registry_url: str | None = settings.registry
    if not settings.registry_url and not settings.registry_file.is_file():
        registry_url = None  # verifying never creates a registry
    identity_ca = settings.key_dir / "identity-ca.pem"  # this home's identity CA: aipic checks author certificates against it
    identity_anchors = [identity_ca.read_text()] if identity_ca.is_file() else []
    trustmark = for_verifying(settings) if registry_url else None
    results = {path: verify_file(path, anchors, registry_url=registry_url, identity_anchors=identity_anchors, trustmark=trustmark, namespace=settings.assertion_namespace)
               for path in args.files}
    if args.prompt is not None:
        from aipic.provenance.verify import prompt_matches

        for result in results.values():
            matched = result.claims_verified and prompt_matches(result.contributions, args.prompt, args.salt)
            result.problems.append("private prompt: MATCHES the recorded hash" if matched else "private prompt: does NOT match the recorded hash")
    if args.json:
        print(json.dumps({path: result.to_dict() for path, result in results.items()}, indent=2, default=str))
    else:
        for index, (path, result) in enumerate(results.items()):
            if index:
                print()
            print(f"== {path}")
            print(result.report())
        if any(result.verdict == "untrusted" for result in results.values()):
            print()
            print(untrusted_hint(settings.key_dir / CA_FILE))
    return EXIT_OK if all(result.ok for result in results.values()) else EXIT_FAILED_CHECK


def cmd_audit(args) -> int:
    from aipic.audit.classifier import load_validation
    from aipic.audit.suites import load_suite, sample_size_notes
    from aipic.models import load_catalog
    from aipic.pipeline.runs import check_run, run_suite

    # Everything that can be refused without a model is refused first, in seconds.
    suite = load_suite(args.suite)
    out = Path(args.out) if args.out else Path("reports") / suite.name
    attribute_set = _attribute_set(args.attributes)
    check_run(suite, args.seeds, out, attribute_set, args.resume, args.seed_rule)  # run_suite checks the same again
    load_catalog().entry("text_to_image", args.model)  # an unknown --model
    validation = load_validation(args.validation) if args.validation else None
    for note in sample_size_notes(suite, args.seeds):
        _say(note)
    pipeline = _pipeline(args, attribute_set)
    _load_models(pipeline, "text_to_image", args.model)
    paths = run_suite(pipeline, suite, args.seeds, out, args.model, progress=not args.no_progress, resume=args.resume, validation=validation, seed_rule=args.seed_rule)
    if args.json:
        print(json.dumps({k: str(v) for k, v in paths.items()}))
    else:
        if not paths["complete"]:
            print("Interrupted: the report covers the images made so far.", file=sys.stderr)
        for line in audit_summary(json.loads(Path(paths["json"]).read_text(encoding="utf-8"))):
            print(line)
        print(f"HTML report: {paths['html']}\nJSON report: {paths['json']}\nCSV rows:    {paths['csv']}")
    if not paths["complete"]:
        return 130  # interrupted (Ctrl-C)
    return EXIT_FAILED_CHECK if paths.get("failed") else EXIT_OK


def audit_summary(report: dict) -> list[str]:
    """The end of ``aipic audit``, in words: the images made, failed and held back, those with a person, and how
    many shares differ from their reference after Holm's correction (report.json's summary: overall and per
    prompt; a two-label attribute's two labels are one test, counted once)."""
    from aipic.audit.statistics import ALPHA

    summary = report.get("summary") or {}
    lines = [f"{summary.get('images', 0)} images made, {summary.get('failed', 0)} failed, {summary.get('safety_filtered', 0)} held back by the safety filter; "
             f"{summary.get('with_person', 0)} with a person."]
    tested: dict = {"overall": 0, "per prompt": 0}
    differ: dict = {"overall": 0, "per prompt": 0}
    scopes = [("overall", summary.get("overall") or [])] + [("per prompt", attributes) for attributes in (summary.get("per_prompt") or {}).values()]
    for scope, attributes in scopes:
        for attribute in attributes:
            shares = attribute.get("shares") or {}
            cells = [cell for cell in shares.values() if cell.get("p_reference_holm") is not None]
            if len(shares) == 2:  # one test: both labels carry its p-value
                cells = cells[:1]
            tested[scope] += len(cells)
            differ[scope] += sum(cell["p_reference_holm"] < ALPHA for cell in cells)
    if not sum(tested.values()):
        lines.append("No share was tested against a reference (the suite gives none, or no image was assessed).")
    else:
        lines.append(f"{sum(differ.values())} of {sum(tested.values())} tests of a share against its reference find a difference after Holm's correction "
                     f"(p_holm < {ALPHA}): {differ['overall']} of {tested['overall']} overall, {differ['per prompt']} of {tested['per prompt']} per prompt. "
                     "The HTML report says which, with intervals.")
    return lines


MODES = {
    "auto": "real weights where they are on this machine, else tiny random-weight placeholders; never downloads",
    "real": "real weights, downloaded first where they are not on this machine",
    "tiny": "tiny random-weight placeholders only (tests, offline trials)",
}


PLACEHOLDER_MEANS = {"text_to_image": "images are noise", "clip": "audits are meaningless", "style": "style transfers are noise",
                     "safety": "nothing is really filtered"}


def what_would_load(entry, mode: str, safety: bool = True) -> dict:
    """What a command would load for a catalog entry in ``mode``, as the loaders decide (aipic.models.loading),
    without loading it: ``weights`` real, placeholder or off; ``present`` whether its real weights are on this
    machine (None where that was not looked up); ``text`` in words."""
    from aipic.models.loading import weights_present

    if entry.section == "safety" and not safety:
        return {"key": entry.key, "weights": "off", "present": None, "text": "nothing: the safety filter is turned off (AIPIC_SAFETY=0)"}
    means = PLACEHOLDER_MEANS.get(entry.section, "outputs are noise")
    if entry.is_tiny_random:
        return {"key": entry.key, "weights": "placeholder", "present": None, "text": f"tiny random-weight placeholders (the catalog's default): {means}"}
    if mode == "tiny":
        return {"key": entry.key, "weights": "placeholder", "present": None,
                "text": f"tiny random-weight placeholders in place of {entry.label} (--models tiny or AIPIC_MODELS=tiny): {means}"}
    present = weights_present(entry)
    if present:
        text = f"the real weights of {entry.label}, found on this machine (a local folder or the Hugging Face / torch cache)"
    elif mode == "real":
        text = f"the real weights of {entry.label}, downloaded first: they are not on this machine (needs network)"
    else:
        text = (f"tiny random-weight placeholders in place of {entry.label}, so {means}: its weights are not on this machine "
                "(run `aipic download`, or use --models real)")
    return {"key": entry.key, "weights": "real" if present or mode == "real" else "placeholder", "present": present, "text": text}


def cmd_models(args) -> int:
    from aipic.models.catalog import load_catalog
    from aipic.provenance.authorship import licence_line

    catalog = load_catalog()
    settings = settings_of(args)
    mode = settings.models_mode
    listing = {
        section: {key: {"label": entry.label, "source": entry.source, "pretrained": entry.pretrained, "default": key == catalog.defaults[section], "license": entry.license,
                        **({"defaults": entry.defaults} if entry.defaults else {})}
                  for key, entry in entries.items()}
        for section, entries in catalog.entries.items()
    }
    would_load = {section: what_would_load(catalog.entry(section), mode, settings.safety) for section in catalog.entries}
    if args.json:
        print(json.dumps({"mode": mode, "catalog": listing, "would_load": would_load}, indent=2))
        return EXIT_OK
    print(f"model mode: {mode} ({MODES.get(mode, mode)})")
    for section, entries in listing.items():
        print(f"{section}:")
        print(f"  would load: {would_load[section]['text']}")
        for key, entry in entries.items():
            marker = "*" if entry["default"] else " "
            print(f"  {marker} {key:<12} {entry['label']}  [{entry['source']}{'/' + entry['pretrained'] if entry['pretrained'] else ''}]")
            print(f"      licence: {licence_line(entry['license'])}")
            if entry.get("defaults"):
                print("      request defaults: " + ", ".join(f"{name} {value}" for name, value in entry["defaults"].items()))
    print("(* the default of its section; choose another text_to_image model with --model)")
    return EXIT_OK


def cmd_download(args) -> int:
    from aipic.models.catalog import load_catalog
    from aipic.models.loading import download_weights
    from aipic.provenance import trustmark

    settings = settings_of(args)
    if args.trustmark:
        spec = trustmark.for_settings(settings)
        fetched = trustmark.download(spec.folder, spec.variant)
        print(f"TrustMark files in {spec.folder}: " + (", ".join(Path(path).name for path in fetched) + " fetched" if fetched else "already there"))
        return EXIT_OK

    if settings.hub_offline:
        raise ModelUnavailable("No network: HF_HUB_OFFLINE is set, so the model hub is not contacted. Unset it on a machine with network access, then run aipic download again.")
    try:
        fetched = download_weights(load_catalog())
    except Exception as error:  # noqa: BLE001
        text = str(error)
        chain: list[BaseException] = []
        seen: BaseException | None = error
        while seen is not None and len(chain) < 10:  # the hub clients wrap the connection error in others
            chain.append(seen)
            seen = seen.__cause__ or seen.__context__
        words = ("connection", "resolve", "offline", "network", "timed out", "max retries", "refused")
        if any(isinstance(e, ConnectionError) or any(w in str(e).lower() for w in words) or "connect" in type(e).__name__.lower() for e in chain):
            raise ModelUnavailable("No network: the model hub could not be reached, so nothing was downloaded. Connect to the internet and run aipic download again.") from None
        raise ModelUnavailable(f"Download failed: {text.splitlines()[0] if text else type(error).__name__}") from None
    print("fetched: " + ", ".join(fetched))
    return EXIT_OK


def _emit_json(result: dict, args, pipeline, out_file: Path | None) -> bool:
    """Write the result to out_file if given; print it as JSON with --json (then True); else warn about
    placeholder models before the plain-text summary (False)."""
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(out_file, json.dumps(result, indent=2, default=str))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return True
    for note in pipeline.placeholder_notes():
        print(f"warning: {note}", file=sys.stderr)
    return False


def cmd_audit_validate(args) -> int:
    from aipic.pipeline.runs import validate_classifier

    pipeline = _pipeline(args, _attribute_set(args.attributes))
    result = validate_classifier(pipeline, args.images, args.labels)
    if _emit_json(result, args, pipeline, Path(args.out) if args.out else None):
        return EXIT_OK
    print(f"{result['images']} labelled images; correction method: {result['correction_method']}")
    for name, entry in result["attributes"].items():
        ece = "—" if entry["ece"] is None else f"{entry['ece']:.3f}"
        accuracy = "— (the classifier gave no label to any of them)" if entry["accuracy"] is None else f"{entry['accuracy']:.1%}"
        print(f"{name}: accuracy {accuracy} over {entry['n']} labelled images, calibration error {ece}")
        for group, numbers in entry["per_group"].items():
            if not numbers["n"]:
                print(f"  {group}: no labelled image (this group's errors are unknown, so this attribute cannot be corrected)")
                continue
            accuracy = "—" if numbers["accuracy"] is None else f"{numbers['accuracy']:.1%}"
            print(f"  {group}: n {numbers['n']}, accuracy {accuracy}, abstained or no person {numbers['abstain_rate']:.1%}")
    return EXIT_OK


def cmd_audit_flips(args) -> int:
    from aipic.pipeline.runs import run_flips

    pipeline = _pipeline(args)
    result = run_flips(pipeline, args.images, args.task, args.prompt, args.style, args.seed, args.out)
    if _emit_json(result, args, pipeline, Path(args.out) / "flips.json" if args.out else None):
        return EXIT_FAILED_CHECK if result["failed"] else EXIT_OK
    print(f"{result['inputs']} inputs through {result['task']}; {len(result['failed'])} failed")
    for name, entry in result["attributes"].items():
        rate = "—" if entry["flip_rate"] is None else f"{entry['flip_rate']:.1%} (95% CI {entry['ci_low']:.1%}–{entry['ci_high']:.1%})"
        print(f"  {name}: {entry['flips']} flips of {entry['compared']} compared, {rate}; {entry['not_compared']} not compared (abstained or no person)")
    return EXIT_FAILED_CHECK if result["failed"] else EXIT_OK


def cmd_audit_compare(args) -> int:
    from aipic.audit.compare import compare, load_report, render_html

    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file; give a folder for compare.json and compare.html.")
    if out is not None and any((out / name).exists() for name in ("compare.json", "compare.html")):
        raise BadInput(f"{out} already holds a comparison; choose a new --out folder so nothing is overwritten.")
    if out is not None and any((out / name).exists() for name in ("report.json", "rows.csv")):
        raise BadInput(f"{out} holds an audit run; choose a folder of its own for the comparison.")
    result = compare(load_report(args.report_a), load_report(args.report_b), Path(args.report_a).name, Path(args.report_b).name, shared_prompts=args.shared_prompts)
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BadInput(f"Cannot create {out}: {error.strerror or error}") from None
        write_atomically(out / "compare.json", json.dumps(result, indent=2))
        write_atomically(out / "compare.html", render_html(result))
    if args.json:
        print(json.dumps(result, indent=2))
        return EXIT_OK
    for note in result["restrictions"]:
        print(note)
    for test in result["stratified_tests"]:
        if test["p"] is None:
            print(f"across {test['prompts']} prompts, {test['attribute'].replace('_', ' ')}: {test['test']}")
            continue
        print(f"across {test['prompts']} prompts, {test['attribute'].replace('_', ' ')}: {test['test']} p {_p(test['p'])}, p_holm {_p(test['p_holm'])}"
              + (" (significant after Holm's correction)" if test["significant"] else ""))
    significant = [row for row in result["comparisons"] if row["significant"] and "same_test_as" not in row]
    print(f"{len(result['comparisons'])} comparisons ({result['method']}); {len(significant)} significant at {result['alpha']} after Holm:")
    for row in significant:
        print(f"  {row['scope']}: {row['attribute'].replace('_', ' ')} = {row['label'].replace('_', ' ')}: {row['share_a']:.1%} vs {row['share_b']:.1%} "
              f"(difference {row['difference'] * 100:+.1f} points, 95% CI {row['ci_low'] * 100:+.1f} to {row['ci_high'] * 100:+.1f}, p_holm {_p(row['p_holm'])})")
    return EXIT_OK


def _p(value: float) -> str:
    """A p-value as a reviewer quotes it: never "0" (one that underflows is below the smallest double)."""
    return "< 1e-300" if value == 0 else f"{value:.3g}"


def cmd_audit_rescore(args) -> int:
    from aipic.audit.attributes import DEFAULT_ATTRIBUTES_PATH, load_attribute_set
    from aipic.audit.classifier import load_validation
    from aipic.audit.rescore import rescore

    attribute_set = load_attribute_set(args.attributes or DEFAULT_ATTRIBUTES_PATH)
    validation = load_validation(args.validation) if args.validation else None
    paths = rescore(args.run, attribute_set, args.out, validation)
    if args.json:
        print(json.dumps({k: str(v) for k, v in paths.items()}))
    else:
        print(f"HTML report: {paths['html']}\nJSON report: {paths['json']}\nCSV rows:    {paths['csv']}")
    return EXIT_OK


COMMANDS = {"generate": cmd_generate, "img2img": cmd_img2img, "style": cmd_style, "verify": cmd_verify, "audit": cmd_audit, "audit-compare": cmd_audit_compare, "audit-validate": cmd_audit_validate, "audit-flips": cmd_audit_flips, "audit-rescore": cmd_audit_rescore, "models": cmd_models, "download": cmd_download}


def _debugging() -> bool:
    try:
        return Settings.from_env().debug
    except AipicError:
        return False


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] in (["audit", "compare"], ["audit", "validate"], ["audit", "flips"], ["audit", "rescore"]):  # `aipic audit compare A B` reads naturally
        argv = [f"audit-{argv[1]}", *argv[2:]]
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except AipicError as error:
        print(f"aipic: error: {error}", file=sys.stderr)
        return error.exit_code  # 2 bad input, 3 bad configuration, 4 model unavailable, 1 a stage failed
    except KeyboardInterrupt:
        print("aipic: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - one clear line; AIPIC_DEBUG=1 shows the traceback
        if _debugging():
            raise
        print(f"aipic: unexpected error ({type(error).__name__}): {error}. Set AIPIC_DEBUG=1 for details.", file=sys.stderr)
        return EXIT_FAILED_CHECK


if __name__ == "__main__":
    sys.exit(main())
