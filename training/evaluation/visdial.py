"""VisDial v1.0: rank the 100 candidate answers of each round; metrics as the challenge's starter code
(batra-mlp-lab/visdial-challenge-starter-pytorch `visdialch/metrics.py`).

- R@1/5/10, mean rank, MRR from the rank of the ground-truth option (`gt_index`), over every round scored.
- NDCG over the rounds with dense annotations (`round_id` counts from 1): with k = the number of options of
  non-zero relevance, DCG of the predicted top k (relevance / log2(position + 2)) over the DCG of the best
  possible top k. A dense round where nothing is relevant has no NDCG (0/0 there): left out and counted.
- Ranks from scores: highest score first; ties keep the options' order (a stable sort; the starter's
  unstable torch sort leaves ties to chance).

Files: `visdial_1.0_val.json` ({"split", "data": {"questions", "answers", "dialogs"}}) and
`visdial_1.0_val_dense_annotations.json`; images VisualDialog_<split>_<12-digit image id>.jpg. Predictions:
the challenge's submission layout `[{"image_id", "round_id", "ranks": [100 ranks, 1 = best]}]`, or "scores".
The model's context for round r: the image, the caption and the ground-truth history of rounds 1..r-1 as a
dialog, then question r (a "?" added: VisDial stores questions without one, the starter adds it too).
"""

from __future__ import annotations

import math
from pathlib import Path

from training.evaluation.common import EvalError, Question, Scores, image_name, mean, need, read_json


def ranks_from_scores(scores: list[float]) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable
    ranks = [0] * len(scores)
    for position, option in enumerate(order):
        ranks[option] = position + 1
    return ranks


def ndcg(ranks: list[int], relevance: list[float]) -> float | None:
    k = sum(r != 0 for r in relevance)
    if k == 0:
        return None
    predicted = sorted(range(len(ranks)), key=lambda i: ranks[i])[:k]
    best = sorted(range(len(relevance)), key=lambda i: -relevance[i])[:k]

    def dcg(options):
        return sum(relevance[o] / math.log2(position + 2) for position, o in enumerate(options))

    return dcg(predicted) / dcg(best)


def load_visdial(dialogs_path: Path, dense_path: Path | None, image_pattern: str | None,
                 dense_rounds_only: bool = False) -> list[Question]:
    data = read_json(dialogs_path, "--annotations (visdial_1.0_val.json)")
    need(data, {"data": dict}, str(dialogs_path))
    body = need(data["data"], {"questions": list, "answers": list, "dialogs": list}, f"{dialogs_path} data")
    questions, answers = body["questions"], body["answers"]
    dense = _read_dense(dense_path) if dense_path else {}
    split = data.get("split", "val2018")
    pattern = image_pattern or "VisualDialog_{split}_{image_id:012d}.jpg"

    def text(table, index, where):
        if not isinstance(index, int) or not 0 <= index < len(table) or not isinstance(table[index], str):
            raise EvalError(f"{where}: index {index!r} is not in the file's question/answer table")
        return table[index]

    out = []
    for d_index, d in enumerate(body["dialogs"]):
        where = f"{dialogs_path} dialog {d_index}"
        need(d, {"image_id": int, "caption": str, "dialog": list}, where)
        image = image_name(pattern, where, image_id=d["image_id"], split=split)
        history: list[dict] = []
        for r_index, turn in enumerate(d["dialog"]):
            r_where = f"{where} round {r_index + 1}"
            need(turn, {"question": int, "answer_options": list, "gt_index": int}, r_where)
            question = text(questions, turn["question"], r_where) + "?"
            first = history == []
            content = ([{"type": "image", "key": "0"}, {"type": "text", "text": f"{d['caption']}.\n{question}"}]
                       if first else [{"type": "text", "text": question}])
            messages = [*history, {"role": "user", "content": content}]
            options = [text(answers, o, r_where) for o in turn["answer_options"]]
            if not 0 <= turn["gt_index"] < len(options):
                raise EvalError(f"{r_where}: gt_index {turn['gt_index']} outside its {len(options)} options")
            relevance = dense.get((d["image_id"], r_index + 1))
            if relevance is not None and len(relevance) != len(options):
                raise EvalError(f"{r_where}: {len(relevance)} dense relevances for {len(options)} options")
            if relevance is not None or not dense_rounds_only:
                out.append(Question(f"{d['image_id']}/{r_index + 1}", messages, [image],
                                    (options, turn["gt_index"], relevance),
                                    {"image_id": d["image_id"], "round_id": r_index + 1}))
            answer = {"type": "text", "text": options[turn["gt_index"]]}  # the ground-truth answer
            history = [*messages, {"role": "assistant", "content": [answer]}]
    if dense and not any(q.gold[2] is not None for q in out):
        raise EvalError(f"no dense annotation of {dense_path} is for a round of {dialogs_path}")
    return out


def _read_dense(path: Path) -> dict[tuple[int, int], list[float]]:
    records = read_json(path, "--dense-annotations (visdial_1.0_val_dense_annotations.json)")
    if not isinstance(records, list):
        raise EvalError(f"{path}: not a JSON list (the dense annotation layout)")
    out = {}
    for i, r in enumerate(records):
        where = f"{path} item {i}"
        need(r, {"image_id": int, "round_id": int}, where)
        relevance = r.get("gt_relevance", r.get("relevance"))
        if not isinstance(relevance, list) or not all(isinstance(x, int | float) for x in relevance):
            raise EvalError(f"{where}: no 'gt_relevance' list of numbers")
        out[(r["image_id"], r["round_id"])] = [float(x) for x in relevance]
    return out


def prediction_key(record: dict, where: str) -> str:
    need(record, {"image_id": int, "round_id": int}, where)
    return f"{record['image_id']}/{record['round_id']}"


def prediction_ranks(record: dict, where: str) -> list[int]:
    if "ranks" in record:
        ranks = record["ranks"]
        if not isinstance(ranks, list) or sorted(ranks) != list(range(1, len(ranks) + 1)):
            raise EvalError(f"{where}: 'ranks' must be a permutation of 1..N (1 = best)")
        return ranks
    scores = record.get("scores")
    if isinstance(scores, list) and scores and all(isinstance(s, int | float) for s in scores):
        return ranks_from_scores(scores)
    raise EvalError(f"{where}: no 'ranks' (1 = best) or 'scores' list")


def score(pairs: list[tuple[Question, list[int]]]) -> Scores:
    rows = []
    for q, ranks in pairs:
        options, gt_index, relevance = q.gold
        if len(ranks) != len(options):
            raise EvalError(f"prediction for {q.key}: {len(ranks)} ranks for {len(options)} options")
        rows.append({"key": q.key, "gt_rank": ranks[gt_index],
                     "ndcg": None if relevance is None else ndcg(ranks, relevance)})
    gt = [r["gt_rank"] for r in rows]
    dense = [r["ndcg"] for r in rows if r["ndcg"] is not None]
    metrics = {**({"ndcg": mean(dense)} if dense else {}), "mrr": mean(1 / g for g in gt), "r@1": mean(g <= 1 for g in gt),
               "r@5": mean(g <= 5 for g in gt), "r@10": mean(g <= 10 for g in gt), "mean_rank": mean(gt)}
    dense_scored = sum(q.gold[2] is not None for q, _ in pairs)
    return Scores(metrics, {}, rows, {"rounds": len(rows), "dense_rounds": len(dense),
                                      "dense_rounds_without_relevant_answer": dense_scored - len(dense)})
