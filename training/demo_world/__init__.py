"""The demo picture world: coloured shapes drawn by our own generator, questions and answers about them in
English and Russian, and the recipe that trains a small OmniFusion on it with training/run.py
(`make demo-model`, docs/demo-model.md).

    scenes.py     what a picture holds (objects, background) and how it is drawn (image + instance mask)
    language.py   the two languages: words, agreement, question and answer templates
    templates.py  the question templates and fixed text-only dialogs
    tasks.py      dialogs about scenes, one sampler per skill, with the expected answer for scoring
    build.py      the data files of every stage (and the held-out sets), written deterministically
    scoring.py    reading an answer back into a colour, shape, number, ... and per-skill accuracy
    recipe.py     the whole recipe, stage by stage, resumable
"""
