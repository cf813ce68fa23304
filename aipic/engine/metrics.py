"""What the engine counts, as Prometheus metrics (served at /metrics by the app; read by the benchmark).

Each engine has its own registry, so several engines (tests, benchmarks) never mix their counts.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class EngineMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.requests = Counter("aipic_requests", "Requests finished, by task and outcome (ok, partial: some images failed, bad_input, error).", ["task", "outcome"], registry=self.registry)
        self.gpu_batches = Counter("aipic_gpu_batches", "GPU batches run, by stage.", ["stage"], registry=self.registry)
        self.batch_size = Histogram("aipic_batch_size", "Images in each GPU batch, by stage.", ["stage"], buckets=SIZE_BUCKETS, registry=self.registry)
        self.stage_seconds = Histogram("aipic_stage_seconds", "Seconds per call of each stage (a whole batch for GPU stages, one image for CPU stages).", ["stage"], buckets=SECONDS_BUCKETS, registry=self.registry)
        self.held_back = Counter("aipic_safety_held_back", "Images held back by the safety filter (never shown, signed or stored), by checker.", ["checker"], registry=self.registry)
        self.queue_depth = Gauge("aipic_queue_depth", "Requests waiting for the GPU.", registry=self.registry)

    def observe_batch(self, stage: str, size: int, seconds: float) -> None:
        self.gpu_batches.labels(stage=stage).inc()
        self.batch_size.labels(stage=stage).observe(size)
        self.stage_seconds.labels(stage=stage).observe(seconds)

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage=stage).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def snapshot(self) -> dict:
        """The same figures as a dict (for JSON): counters and gauges by label, histograms as count/sum/mean."""
        out: dict = {}
        for family in self.registry.collect():
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le")
                if sample.name.endswith("_bucket") or sample.name.endswith("_created"):
                    continue
                out.setdefault(sample.name, {})[labels or "all"] = sample.value
        for name in ("aipic_stage_seconds", "aipic_batch_size"):
            counts, sums = out.get(f"{name}_count", {}), out.get(f"{name}_sum", {})
            out[f"{name}_mean"] = {label: sums[label] / count for label, count in counts.items() if count}
        return out


def parse_text(text: str) -> dict:
    """Samples of a Prometheus text exposition as {name: {labels: value}} (for tests and the benchmark)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out.setdefault(sample.name, {})[labels or "all"] = sample.value
    return out
