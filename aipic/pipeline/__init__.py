"""The pipeline: requests resolved once into jobs, run through the engine's stages, outcomes back. The app, the
CLI and the audit runs come through AipicPipeline.

The names below are loaded on first use: worker processes import aipic.pipeline.finishing, and that must not
bring in torch and the models with the service.
"""

__all__ = ["AipicPipeline", "Outcome", "OutputItem"]


def __getattr__(name):
    if name == "AipicPipeline":
        from aipic.pipeline.service import AipicPipeline

        return AipicPipeline
    if name in ("Outcome", "OutputItem"):
        from aipic.pipeline import outcome

        return getattr(outcome, name)
    raise AttributeError(name)
