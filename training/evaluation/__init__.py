"""Evaluation on the published benchmarks, faithful to each one's official scoring (docs/evaluation.md).

common.py (readers, questions, matching) · vqa_text.py + vqa.py (VQAv2, OK-VQA, VizWiz, TextVQA) · pope.py ·
scienceqa.py · gqa.py · visdial.py · captions.py (held-out loss) · runner.py (batched answers and candidate
likelihoods through the serving engine) · tasks.py (the registry) · report.py (JSON + markdown). The command
line is training/eval.py.
"""
