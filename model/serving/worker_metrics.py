"""Prometheus metrics of one worker, on a registry of its own (no module-level state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class WorkerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge("omnifusion_queue_depth", "jobs waiting or pending in the group", registry=r)
        self.batch_size = Gauge("omnifusion_batch_size", "requests in the decode batch", registry=r)
        self.tokens_in_flight = Gauge("omnifusion_tokens_in_flight", "real tokens held in the KV cache", registry=r)
        self.kv_slots = Gauge("omnifusion_kv_slots", "KV cache cells per layer held now: rows x padded width",
                              registry=r)
        self.kv_slots_peak = Gauge("omnifusion_kv_slots_peak", "cells per layer the batch may reach (admission "
                                   "keeps it within WORKER_MAX_TOKENS_IN_FLIGHT)", registry=r)
        self.leases_lost = Counter("omnifusion_leases_lost", "jobs dropped because another worker took them over "
                                   "(this one stalled past its lease)", registry=r)
        self.tokens = Counter("omnifusion_generated_tokens", "tokens generated (rate() = tokens/s)", registry=r)
        self.jobs = Counter("omnifusion_jobs", "jobs finished, by outcome", ["outcome"], registry=r)
        self.errors = Counter("omnifusion_job_errors", "error events sent, by code", ["code"], registry=r)
        self.cache = Counter("omnifusion_image_cache", "image feature cache lookups", ["result"], registry=r)
        buckets = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
        self.ttft = Histogram("omnifusion_time_to_first_token_seconds", "job taken -> first token", buckets=buckets,
                              registry=r)
        self.latency = Histogram("omnifusion_job_seconds", "job taken -> final event", buckets=buckets, registry=r)
        self.queue_wait = Histogram("omnifusion_queue_wait_seconds", "job queued -> taken by a worker",
                                    buckets=buckets, registry=r)

    def sample(self, engine, cache) -> None:
        """Gauges of the batch, and the feature cache's lookups since the last sample."""
        self.tokens_in_flight.set(engine.tokens_in_flight())
        self.kv_slots.set(engine.slots())
        self.cache.labels("hit").inc(cache.hits)
        self.cache.labels("miss").inc(cache.misses)
        cache.hits = cache.misses = 0

    def serve(self, port: int, host: str):
        """Start /metrics on host:port; returns (server, thread) so the caller can shut it down."""
        return start_http_server(port, addr=host, registry=self.registry)
