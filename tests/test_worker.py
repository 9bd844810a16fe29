"""The worker against the real Redis: protocol round trip, batching, cache, errors, deadlines, cancellation."""

import json
import urllib.request

import pytest
import torch

from model import protocol
from model.dialog import encode_dialog
from model.serving.engine import SamplingParams, generate
from tests.model_helpers import assistant, drawn_image, user
from tests.worker_helpers import SHORT_LEASE, events, store_image, submit, wait_for, worker_thread


@pytest.fixture(scope="module")
def model():
    from model.checkpoint import load_model

    return load_model("tiny", device="cpu")


def final(evs):
    assert evs[-1]["event"] in ("done", "error")
    assert sum(e["event"] in ("done", "error") for e in evs) == 1
    return evs[-1]


def test_round_trip_streams_deltas_that_add_up(redis_url, redis_client, model):
    key = store_image(redis_client)
    with worker_thread(redis_url, model, worker_delta_interval_s=0.0):
        job = submit(redis_client, [user("What is on this photo?", key)], {"max_new_tokens": 30})
        evs = events(redis_client, job.reply)
    done = final(evs)
    deltas = [e for e in evs if e["event"] == "delta"]
    assert done["event"] == "done" and done["finish"] == "length" and done["tokens"] == 30
    assert len(deltas) >= 2 and "".join(e["text"] for e in deltas) == done["text"]
    assert 0 < redis_client.ttl(job.reply) <= 3600
    assert redis_client.xpending(protocol.JOBS_STREAM, protocol.GROUP)["pending"] == 0  # acked


def test_deltas_are_coalesced(redis_url, redis_client, model):
    with worker_thread(redis_url, model, worker_delta_interval_s=60.0):
        job = submit(redis_client, [user("hello")], {"max_new_tokens": 40})
        evs = events(redis_client, job.reply)
    assert [e["event"] for e in evs] == ["delta", "delta", "done"]  # first token, the rest, done


def test_batched_jobs_equal_each_alone(redis_url, redis_client, model):
    key = store_image(redis_client, drawn_image((20, 200, 20)))
    dialogs = [[user("What is on this photo?", key)], [user("hi")],
               [user("tell me"), assistant("once upon a time"), user("go on please")], [user("x" * 40)]]
    with worker_thread(redis_url, model, worker_max_batch=4) as worker:
        jobs = [submit(redis_client, d, {"max_new_tokens": 25}) for d in dialogs]
        results = [final(events(redis_client, j.reply))["text"] for j in jobs]
        max_batch = worker.metrics.batch_size._value.get()
    img = model.encode_images([drawn_image((20, 200, 20))])
    for d, got in zip(dialogs, results, strict=True):
        enc = encode_dialog(d, model.tokenizer, model.config)
        embeds, _ = model.embed_dialog(enc, list(img) if enc.image_keys else [])
        want = generate(model, [embeds], SamplingParams(max_new_tokens=25, stop=()))[0][0]
        assert got == want
    assert max_batch >= 0


def test_jobs_arriving_together_share_the_batch(redis_url, redis_client, model):
    sizes = []
    with worker_thread(redis_url, model, worker_max_batch=8) as worker:
        original = worker.engine.step

        def spy():
            sizes.append(len(worker.engine))
            return original()

        worker.engine.step = spy
        jobs = [submit(redis_client, [user(f"question {i}")], {"max_new_tokens": 30}) for i in range(6)]
        for j in jobs:
            final(events(redis_client, j.reply))
    assert max(sizes) >= 4  # not one after another


def test_follow_up_on_the_same_image_skips_the_vision_encoder(redis_url, redis_client, model):
    calls = []
    handle = model.vision.register_forward_hook(lambda *a: calls.append(1))
    try:
        key = store_image(redis_client, drawn_image((1, 2, 3)))
        with worker_thread(redis_url, model):
            j1 = submit(redis_client, [user("what is it?", key)], {"max_new_tokens": 5})
            first = final(events(redis_client, j1.reply))
            j2 = submit(redis_client, [user("what is it?", key), assistant(first["text"]), user("sure?")],
                        {"max_new_tokens": 5})
            assert final(events(redis_client, j2.reply))["event"] == "done"
    finally:
        handle.remove()
    assert len(calls) == 1


def test_bad_jobs_get_errors_and_the_worker_keeps_serving(redis_url, redis_client, model):
    good_key = store_image(redis_client)
    broken = b"\x89PNG\r\n\x1a\nnot really"
    redis_client.set(protocol.image_key_for(broken), broken, ex=60)  # its true key: the decoding must fail
    reply = protocol.reply_key("manual")
    bad = {
        "bad_version": json.dumps({"v": 99, "id": "manual", "reply": reply, "messages": []}),
        "empty": json.dumps({"v": 1, "id": "manual", "reply": reply, "messages": []}),
        "image_missing": submit_json([user("?", protocol.image_key("0" * 64))], reply),
        "bad_image": submit_json([user("?", protocol.image_key_for(broken))], reply),
        "expired": submit_json([user("late")], reply, deadline=1.0),
        "bad_job": submit_json([user("hi")], reply, params={"temperature": -3}),
        "too_many_images": submit_json([user("?", *[good_key] * 5)], reply),
        "too_long": submit_json([user("word " * 3000)], reply),
    }
    with worker_thread(redis_url, model):
        for code, raw in bad.items():
            redis_client.delete(reply)
            redis_client.xadd(protocol.JOBS_STREAM, {"job": raw})
            err = final(events(redis_client, reply))
            assert (err["event"], err["code"]) == ("error", code), err
            assert err["message"]
        redis_client.xadd(protocol.JOBS_STREAM, {"job": "{not json"})  # no reply stream: dead-letter
        wait_for(lambda: redis_client.xlen(protocol.DEAD_STREAM) == 1)
        job = submit(redis_client, [user("still there?", good_key)], {"max_new_tokens": 3})
        assert final(events(redis_client, job.reply))["event"] == "done"
    dead = redis_client.xrange(protocol.DEAD_STREAM)[0][1]
    assert dead[b"reason"].startswith(b"bad_json")
    assert redis_client.xpending(protocol.JOBS_STREAM, protocol.GROUP)["pending"] == 0


def submit_json(messages, reply, deadline=None, params=None):
    body = {"v": 1, "id": "manual", "reply": reply, "messages": messages, "params": params or {}}
    if deadline is not None:
        body["deadline"] = deadline
    return json.dumps(body)


def test_cancellation_stops_generation(redis_url, redis_client, model):
    with worker_thread(redis_url, model, worker_delta_interval_s=0.0):
        job = submit(redis_client, [user("a long answer please")], {"max_new_tokens": 1900, "wrap_up": 0})
        wait_for(lambda: redis_client.xlen(job.reply) >= 2)
        redis_client.set(protocol.cancel_key(job.id), 1, ex=600)
        done = final(events(redis_client, job.reply))
    assert done["finish"] == "cancelled" and done["tokens"] < 1900
    assert "".join(e["text"] for e in events(redis_client, job.reply)[:-1]) == done["text"]


def test_cancelled_before_start_is_not_generated(redis_url, redis_client, model):
    job = submit(redis_client, [user("never mind")])
    redis_client.set(protocol.cancel_key(job.id), 1, ex=600)
    with worker_thread(redis_url, model):
        done = final(events(redis_client, job.reply))
    assert (done["finish"], done["tokens"], done["text"]) == ("cancelled", 0, "")


def test_dead_letter_after_too_many_deliveries(redis_url, redis_client, model):
    job = submit(redis_client, [user("poison")])
    redis_client.xgroup_create(protocol.JOBS_STREAM, protocol.GROUP, id="0")
    # a worker that takes the job and dies, three times over
    redis_client.xreadgroup(protocol.GROUP, "ghost", {protocol.JOBS_STREAM: ">"})
    entry = redis_client.xpending_range(protocol.JOBS_STREAM, protocol.GROUP, "-", "+", 1)[0]["message_id"]
    for _ in range(2):
        redis_client.xclaim(protocol.JOBS_STREAM, protocol.GROUP, "ghost", 0, [entry])
    with worker_thread(redis_url, model, worker_max_deliveries=3, **SHORT_LEASE):
        err = final(events(redis_client, job.reply))
    assert (err["event"], err["code"]) == ("error", "dead_letter")
    dead = redis_client.xrange(protocol.DEAD_STREAM)
    assert len(dead) == 1 and dead[0][1][b"deliveries"] == b"4"
    assert json.loads(dead[0][1][b"job"])["id"] == job.id


def test_orphan_is_taken_over_with_a_restart_event(redis_url, redis_client, model):
    job = submit(redis_client, [user("orphan")], {"max_new_tokens": 5})
    redis_client.xgroup_create(protocol.JOBS_STREAM, protocol.GROUP, id="0")
    redis_client.xreadgroup(protocol.GROUP, "dead-worker", {protocol.JOBS_STREAM: ">"})
    redis_client.xadd(job.reply, protocol.delta_event("half an ans"))  # what the dead worker had sent
    with worker_thread(redis_url, model, **SHORT_LEASE):
        evs = events(redis_client, job.reply)
    kinds = [e["event"] for e in evs]
    assert kinds[:2] == ["delta", "restart"] and kinds[-1] == "done" and kinds.count("done") == 1
    after = evs[kinds.index("restart") + 1:]
    assert "".join(e["text"] for e in after[:-1]) == after[-1]["text"]


def test_heartbeat_and_metrics(redis_url, redis_client, model):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with worker_thread(redis_url, model, worker_metrics_port=port, worker_name="hb-1"):
        job = submit(redis_client, [user("hi")], {"max_new_tokens": 4})
        final(events(redis_client, job.reply))
        beat = json.loads(redis_client.get(protocol.heartbeat_key("hb-1")))
        assert beat["preset"] == "tiny" and 0 < redis_client.ttl(protocol.heartbeat_key("hb-1")) <= 15
        # The worker counts a job just after it sends the final event, so a reader can be a moment early.
        def scrape():
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
            return text if "omnifusion_job_seconds_count 1.0" in text else None

        text = wait_for(scrape, timeout=5)
    assert 'omnifusion_jobs_total{outcome="length"} 1.0' in text
    assert "omnifusion_time_to_first_token_seconds_count 1.0" in text
    assert redis_client.get(protocol.heartbeat_key("hb-1")) is None  # cleared on a clean stop


def test_oldest_turns_are_dropped_to_fit(redis_url, redis_client, model):
    key = store_image(redis_client)
    long_history = [user("look", key), assistant("word " * 200), user("more " * 200), assistant("ok " * 200),
                    user("what was on the photo?")]
    with worker_thread(redis_url, model, worker_max_input_tokens=400) as worker:
        job = submit(redis_client, long_history, {"max_new_tokens": 5})
        assert final(events(redis_client, job.reply))["event"] == "done"
        assert worker.cache.get(key) is not None  # the photo was still part of the answer
    assert torch.is_tensor(worker.cache.get(key))


def test_answered_jobs_are_trimmed_but_never_pending_or_queued_ones(redis_url, redis_client, model):
    with worker_thread(redis_url, model) as worker:
        done = [submit(redis_client, [user(f"q{i}")], {"max_new_tokens": 2}) for i in range(3)]
        for j in done:
            final(events(redis_client, j.reply))
        worker.request_stop()
    from model.serving.jobs import JobConsumer

    queue = JobConsumer(redis_client, "trimmer", 60, 3)
    pending = submit(redis_client, [user("taken by a worker that died")])
    redis_client.xreadgroup(protocol.GROUP, "dead", {protocol.JOBS_STREAM: ">"})
    queued = submit(redis_client, [user("not delivered yet")])
    assert redis_client.xlen(protocol.JOBS_STREAM) == 5
    assert queue.trim(keep_s=3600) == 0  # all recent: kept for a while (debugging, late readers)
    assert queue.trim(keep_s=0) == 3  # the answered ones go
    left = [json.loads(f[b"job"])["id"] for _, f in redis_client.xrange(protocol.JOBS_STREAM)]
    assert left == [pending.id, queued.id]
