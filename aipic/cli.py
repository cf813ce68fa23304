"""The aipic command line: generate, img2img, style, verify, audit, models, download.

Bad input prints one clear line to stderr and exits 2; no tracebacks.
"""

import argparse
import json
import sys
from pathlib import Path

from aipic.common.data import suite_names
from aipic.common.errors import AipicError, BadInput, ModelUnavailable, StageFailed
from aipic.common.files import write_atomically
from aipic.common.settings import Settings

EXIT_OK, EXIT_FAILED_CHECK, EXIT_USAGE = 0, 1, 2


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", choices=("auto", "real", "tiny"), default=None, help="auto (default): real weights if present locally, else tiny random ones; real: download if needed; tiny: placeholders")
    parser.add_argument("--device", default=None, help="torch device, e.g. cuda or cpu (default: cuda if available)")
    parser.add_argument("--home", default=None, help="folder for keys/ and outputs/ (default: $AIPIC_HOME or ~/.aipic)")
    parser.add_argument("--out", default=None, help="folder for signed outputs (default: <home>/outputs)")
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
    parser.add_argument("prompt")
    parser.add_argument("--negative", default="", help="negative prompt")
    parser.add_argument("--seed", type=int, default=-1, help="-1 picks one (recorded in the output)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--batch", type=int, default=1)
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
    img2img.add_argument("init_image")
    _add_generation(img2img)
    img2img.add_argument("--strength", type=float, default=None, help="0..1: how much to change the init image")
    _add_common(img2img)

    style = commands.add_parser("style", help="neural style transfer (Gatys, VGG features)")
    style.add_argument("content_image")
    style.add_argument("style_image")
    style.add_argument("--steps", type=int, default=100)
    style.add_argument("--size", type=int, default=256, help="longest side of the output")
    style.add_argument("--style-weight", type=float, default=1e5)
    style.add_argument("--content-weight", type=float, default=1.0)
    style.add_argument("--seed", type=int, default=0)
    style.add_argument("--format", default=None, choices=("png", "jpeg", "webp"), help="output file format (default png); all are signed")
    style.add_argument("--record-upload-names", action="store_true", help="record uploads' file names in the manifest (default: only their role)")
    _add_rights(style)
    _add_common(style)

    verify = commands.add_parser("verify", help="check the Content Credentials of image files")
    verify.add_argument("files", nargs="+")
    verify.add_argument("--trust", action="append", default=[], help="extra PEM file of trust anchors (repeatable); aipic's local CA is always trusted")
    verify.add_argument("--home", default=None)
    verify.add_argument("--json", action="store_true")
    verify.add_argument("--prompt", default=None, help="with --salt: check that a private prompt's recorded hash is this prompt")
    verify.add_argument("--salt", default=None, help="the salt printed when the output was made with --private-prompt")

    compare = commands.add_parser("audit-compare", help="compare two audit reports: differences with intervals and tests (also: aipic audit compare A B)")
    compare.add_argument("report_a", help="a report folder or its report.json")
    compare.add_argument("report_b")
    compare.add_argument("--out", default=None, help="a new folder for compare.json and compare.html (nothing is overwritten)")
    compare.add_argument("--shared-prompts", action="store_true", help="when the reports ran different prompts, compare only the prompts both ran (said in the result)")
    compare.add_argument("--json", action="store_true")

    rescore = commands.add_parser("audit-rescore", help="a new report from a run's stored readings with other thresholds or a validation, without regenerating (also: aipic audit rescore RUN)")
    rescore.add_argument("run", help="the folder of an audit run (rows.csv, report.json, run.json)")
    rescore.add_argument("--out", required=True, help="a new folder for the re-scored report")
    rescore.add_argument("--attributes", default=None, help="attribute set YAML with other thresholds (same classes and phrases); default audits/attributes.yaml")
    rescore.add_argument("--validation", default=None, help="a result of aipic audit validate: also report shares corrected for misclassification")
    rescore.add_argument("--json", action="store_true")

    validate = commands.add_parser("audit-validate", help="the classifier's accuracy, abstentions and calibration on a labelled image set (also: aipic audit validate)")
    validate.add_argument("--images", required=True, help="folder of images")
    validate.add_argument("--labels", required=True, help="CSV: a 'file' column and one column per attribute with the true label")
    validate.add_argument("--attributes", default=None)
    validate.add_argument("--out", default=None, help="write the result as JSON here (use it with aipic audit --validation)")
    validate.add_argument("--models", choices=("auto", "real", "tiny"), default=None)
    validate.add_argument("--device", default=None)
    validate.add_argument("--home", default=None)
    validate.add_argument("--json", action="store_true")

    flips = commands.add_parser("audit-flips", help="how often img2img or style transfer changes perceived attributes (also: aipic audit flips)")
    flips.add_argument("--images", required=True, help="folder of input images")
    flips.add_argument("--task", choices=("img2img", "style"), default="img2img")
    flips.add_argument("--prompt", default="", help="the img2img edit applied to every input")
    flips.add_argument("--style", default=None, help="the style image, for --task style")
    flips.add_argument("--seed", type=int, default=0)
    _add_common(flips)

    audit = commands.add_parser("audit", help="batch bias-audit report over a prompt suite × seeds")
    audit.add_argument("--suite", default="audits/suites/occupations.yaml", help=f"a prompt suite's YAML file, or a packaged suite's name ({', '.join(suite_names())})")
    audit.add_argument("--seeds", type=int, default=4, help="seeds per prompt (1 to 10,000)")
    audit.add_argument("--seed-rule", choices=("shared", "per-prompt"), default="shared",
                       help="shared: every prompt uses seeds 0..n-1 (paired counterfactuals); per-prompt: no two prompts share a seed")
    audit.add_argument("--model", default=None)
    audit.add_argument("--attributes", default=None, help="attribute set YAML (default audits/attributes.yaml)")
    audit.add_argument("--no-progress", action="store_true")
    audit.add_argument("--resume", action="store_true", help="continue the run in --out (same settings), without redoing finished images")
    audit.add_argument("--validation", default=None, help="a result of aipic audit validate: also report shares corrected for misclassification")
    _add_common(audit)

    models = commands.add_parser("models", help="list the model catalog and what would load")
    models.add_argument("--models", choices=("auto", "real", "tiny"), default=None)
    models.add_argument("--json", action="store_true")

    download = commands.add_parser("download", help="fetch the default real weights (needs network)")
    download.add_argument("--trustmark", action="store_true", help="fetch Adobe TrustMark's model files instead (the watermark with AIPIC_WATERMARK_METHOD=trustmark) into AIPIC_TRUSTMARK_MODELS or <home>/models/trustmark")
    download.add_argument("--home", default=None, help="folder for keys/, outputs/ and models/ (default: $AIPIC_HOME or ~/.aipic)")
    return parser


def settings_of(args) -> Settings:
    """The one Settings of this command: the environment, then its options."""
    return Settings.from_env(models_mode=getattr(args, "models", None), device=getattr(args, "device", None), home=Path(args.home) if getattr(args, "home", None) else None)


def _pipeline(args, attributes=None, output_dir=None):
    # Lazy: the pipeline imports torch and the models, which `aipic verify` and `aipic models` never need.
    from aipic.audit.attributes import load_attribute_set
    from aipic.pipeline import AipicPipeline

    attribute_set = load_attribute_set(attributes) if attributes else None
    return AipicPipeline(settings_of(args), attribute_set=attribute_set, output_dir=output_dir)


def _print_outcome(outcome, as_json: bool) -> None:
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


def cmd_generate(args) -> int:
    author = _author(args)
    outcome = _pipeline(args, output_dir=args.out).text_to_image(_generation_request(args), args.model, author=author)
    _print_outcome(outcome, args.json)
    return _outcome_exit(outcome)


def cmd_img2img(args) -> int:
    author = _author(args)
    outcome = _pipeline(args, output_dir=args.out).image_to_image(_generation_request(args, args.strength), args.init_image, args.model, author=author)
    _print_outcome(outcome, args.json)
    return _outcome_exit(outcome)


def cmd_style(args) -> int:
    from aipic.generation.requests import StyleRequest

    request = StyleRequest(content_image=args.content_image, style_image=args.style_image, steps=args.steps, size=args.size, style_weight=args.style_weight, content_weight=args.content_weight, seed=args.seed, output_format=args.format, record_upload_names=args.record_upload_names, **_rights_fields(args))
    author = _author(args)
    from tqdm import tqdm

    with tqdm(total=args.steps, desc="style transfer", unit="step", disable=args.json, file=sys.stderr) as bar:
        def progress(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()

        outcome = _pipeline(args, output_dir=args.out).style_transfer(request, progress=progress, author=author)
    _print_outcome(outcome, args.json)
    return _outcome_exit(outcome)


def cmd_verify(args) -> int:
    # Light imports only: verifying never loads torch or the models.
    from aipic.provenance.certificates import check_pem_anchors
    from aipic.provenance.signing_identity import local_trust_anchors
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
    return EXIT_OK if all(result.ok for result in results.values()) else EXIT_FAILED_CHECK


def cmd_audit(args) -> int:
    from aipic.audit.classifier import load_validation
    from aipic.audit.findings import check_seeds
    from aipic.audit.suites import load_suite, sample_size_notes
    from aipic.pipeline.runs import run_suite

    suite = load_suite(args.suite)  # checked again against the attribute set once the pipeline has it
    out = Path(args.out) if args.out else Path("reports") / suite.name
    check_seeds(args.seeds)
    for note in sample_size_notes(suite, args.seeds):
        print(note, file=sys.stderr)
    pipeline = _pipeline(args, args.attributes)
    for note in pipeline.placeholder_notes():
        print(f"warning: {note}", file=sys.stderr)
    validation = load_validation(args.validation) if args.validation else None
    paths = run_suite(pipeline, suite, args.seeds, out, args.model, progress=not args.no_progress, resume=args.resume, validation=validation, seed_rule=args.seed_rule)
    if args.json:
        print(json.dumps({k: str(v) for k, v in paths.items()}))
    else:
        if not paths["complete"]:
            print("Interrupted: the report covers the images made so far.", file=sys.stderr)
        print(f"HTML report: {paths['html']}\nJSON report: {paths['json']}\nCSV rows:    {paths['csv']}")
    if not paths["complete"]:
        return 130  # interrupted (Ctrl-C)
    return EXIT_FAILED_CHECK if paths.get("failed") else EXIT_OK


def cmd_models(args) -> int:
    from aipic.models.catalog import load_catalog
    from aipic.provenance.authorship import licence_line

    catalog = load_catalog()
    mode = settings_of(args).models_mode
    listing = {
        section: {key: {"label": entry.label, "source": entry.source, "pretrained": entry.pretrained, "default": key == catalog.defaults[section], "license": entry.license}
                  for key, entry in entries.items()}
        for section, entries in catalog.entries.items()
    }
    if args.json:
        print(json.dumps({"mode": mode, "catalog": listing}, indent=2))
        return EXIT_OK
    print(f"model mode: {mode}")
    for section, entries in listing.items():
        print(f"{section}:")
        for key, entry in entries.items():
            marker = "*" if entry["default"] else " "
            print(f"  {marker} {key:<12} {entry['label']}  [{entry['source']}{'/' + entry['pretrained'] if entry['pretrained'] else ''}]")
            print(f"      licence: {licence_line(entry['license'])}")
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

    pipeline = _pipeline(args, args.attributes)
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
        print(f"across {test['prompts']} prompts, {test['attribute']}: {test['test']} p {test['p']:.4g}, p_holm {test['p_holm']:.4g}"
              + (" (significant)" if test["significant"] else ""))
    significant = [row for row in result["comparisons"] if row["significant"] and "same_test_as" not in row]
    print(f"{len(result['comparisons'])} comparisons ({result['method']}); {len(significant)} significant at {result['alpha']} after Holm:")
    for row in significant:
        print(f"  {row['scope']}: {row['attribute']} = {row['label']}: {row['share_a']:.1%} vs {row['share_b']:.1%} "
              f"(difference {row['difference']:+.1%}, 95% CI {row['ci_low']:+.1%} to {row['ci_high']:+.1%}, p_holm {row['p_holm']:.4f})")
    return EXIT_OK


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
