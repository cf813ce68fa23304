"""The engine: records flow through ordered stages; GPU stages are batched across requests under one model lock,
CPU stages run per record in a pool (and worker processes). It knows jobs, records, stages, batching, lanes,
futures, workers and metrics — nothing of images, models, audits or provenance: those live in the stages it is
handed (aipic.pipeline.stages)."""

from aipic.engine.core import Engine
from aipic.engine.jobs import Job, Record, Stage
from aipic.engine.lock import ModelLock
from aipic.engine.metrics import EngineMetrics
from aipic.engine.workers import WorkerPool, automatic_processes

__all__ = ["Engine", "EngineMetrics", "Job", "ModelLock", "Record", "Stage", "WorkerPool", "automatic_processes"]
