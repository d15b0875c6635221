"""Prometheus metrics of the verifier (one registry per verifier, served at /metrics)."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.appraisals = Counter("bytereplay_verifier_appraisals", "Appraisals by EAR status",
                                  ["status"], registry=r)
        self.verdicts = Counter("bytereplay_verifier_replay_verdicts", "Replay verdicts",
                                ["verdict"], registry=r)
        self.nonces_issued = Counter("bytereplay_verifier_nonces_issued", "Nonces issued",
                                     registry=r)
        self.nonce_refusals = Counter("bytereplay_verifier_nonce_refusals",
                                      "Nonces refused, by reason", ["reason"], registry=r)
        self.latency = Histogram("bytereplay_verifier_appraisal_seconds",
                                 "Appraisal latency (with replay where it ran)", ["replay"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.replay_seconds = Histogram("bytereplay_verifier_replay_seconds",
                                        "Replay generation time", buckets=LATENCY_BUCKETS,
                                        registry=r)
        self.replay_queue = Gauge("bytereplay_verifier_replay_queue",
                                  "Replays accepted and not yet finished", registry=r)
        # The replay fleet (replay_backend "celery"); queue depth and workers read at scrape.
        self.replay_job_seconds = Histogram("bytereplay_verifier_replay_job_seconds",
                                            "Replay job latency on the fleet, from sending the "
                                            "job to its outcome", buckets=LATENCY_BUCKETS,
                                            registry=r)
        self.replay_queue_depth = Gauge("bytereplay_verifier_replay_queue_depth",
                                        "Replay jobs waiting in the fleet's queue, by model "
                                        "digest", ["model"], registry=r)
        self.replay_workers = Gauge("bytereplay_verifier_replay_workers",
                                    "Live replay workers advertising models", registry=r)
        self.replay_model_workers = Gauge("bytereplay_verifier_replay_model_workers",
                                          "Live replay workers holding a model, by digest",
                                          ["model"], registry=r)
        self.transport_errors = Counter("bytereplay_verifier_refused_requests",
                                        "Requests refused before appraisal (problem+json)",
                                        ["status"], registry=r)

        # Labelled children by (metric, label value): `labels()` returns the same child every
        # time (nothing here removes one), so it is looked up once per value.
        self._children: dict[tuple[int, str], Any] = {}

    def child(self, metric: Counter | Histogram, value: str) -> Any:
        """`metric.labels(value)`, remembered."""
        key = (id(metric), value)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(value)
        return found

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
