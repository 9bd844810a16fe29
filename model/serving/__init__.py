"""Serving: the continuous-batching engine (engine.py, kvcache.py, stopping.py) and the Redis inference worker
(worker.py, jobs.py, feature_cache.py, worker_metrics.py, settings.py). `python -m model.worker` runs it."""
