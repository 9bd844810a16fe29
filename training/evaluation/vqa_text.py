"""Answer normalisation exactly as the VQA evaluation scripts do it, quirks included.

Two scripts, read for this (no code copied; the word tables are data and are the scripts' own):
- the official evaluation, GT-Vision-Lab/VQA `PythonEvaluationTools/vqaEvaluation/vqaEval.py` (master,
  2021 "Fixed processing answers bug"): `official_prepare` below. Newlines and tabs become spaces and both
  sides are stripped; punctuation and digit/article/contraction processing run, on the answers and on the
  prediction, only when the annotators did not all give the same string. So a prediction "Yes" scores 0
  against ten "yes", and the prediction is never lowercased otherwise.
- VizWiz's evaluation (`VQAEval` by Qing Li, published with the data set): `vizwiz_prepare`, the same
  processing, always on the prediction and never on the answers.
- EvalAI's answer processor (facebookresearch/mmf, copied into LLaVA's `m4c_evaluator.py` and lmms-eval):
  `evalai_process`. Always lowercases, drops "," and "?", splits "'s", then the same two steps.

Quirks kept on purpose, because the published numbers were computed with them: the period regex
`(?!<=\\d)(\\.)(?!\\d)` is a look-ahead typo for a look-behind, so every "." not followed by a digit goes; the
official script passes `re.UNICODE` (= 32) where `sub` takes `count`, so at most 32 periods are removed; "$" is
not punctuation ("$5" never equals "5"); capitalised contraction keys ("Im", "Ive") never match after
lowercasing.
"""

from __future__ import annotations

import re

PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
               "?", "!")
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
OFFICIAL_COMMA = re.compile(r"(\d)(,)(\d)")  # a comma between digits: every punctuation mark is deleted
EVALAI_COMMA = re.compile(r"(?<=\d)(,)+(?=\d)")
PERIOD_COUNT = re.UNICODE.value  # what the official call really passes as `count` (32)
NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
           "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})
CONTRACTIONS = dict(pair.split("=", 1) for pair in """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've
couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've
hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's
howd=how'd howll=how'll hows=how's Id've=I'd've I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd
itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am mightnt=mightn't mightnt've=mightn't've
mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've neednt=needn't notve=not've
oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at 'ow'sat='ow's'at shant=shan't
shed've=she'd've she'dve=she'd've she's=she's shouldve=should've shouldnt=shouldn't
shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd somebodyd've=somebody'd've
somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's someoned=someone'd
someoned've=someone'd've someone'dve=someone'd've someonell=someone'll someones=someone's
somethingd=something'd somethingd've=something'd've something'dve=something'd've
somethingll=something'll thats=that's thered=there'd thered've=there'd've there'dve=there'd've
therere=there're theres=there's theyd=they'd theyd've=they'd've they'dve=they'd've theyll=they'll
theyre=they're theyve=they've twas='twas wasnt=wasn't wed've=we'd've we'dve=we'd've weve=we've
werent=weren't whatll=what'll whatre=what're whats=what's whatve=what've whens=when's whered=where'd
wheres=where's whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's
whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll
yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've
you'dve=you'd've youll=you'll youre=you're youve=you've
""".split())


def process_punctuation(text: str, comma: re.Pattern = OFFICIAL_COMMA) -> str:
    # Every test looks at the input, not at the text being rewritten: that is what both scripts do.
    delete_all = comma.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        spaced = mark + " " in text or " " + mark in text
        out = out.replace(mark, "" if delete_all or spaced else " ")
    return PERIOD_STRIP.sub("", out, count=PERIOD_COUNT)


def process_digit_article(text: str) -> str:
    words = [NUMBERS.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def clean_whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def official_prepare(prediction: str, answers: list[str]) -> tuple[str, list[str]]:
    """vqaEval.py: both sides as the official script compares them."""
    answers = [clean_whitespace(a) for a in answers]
    prediction = clean_whitespace(prediction)
    if len(set(answers)) > 1:
        answers = [process_digit_article(process_punctuation(a)) for a in answers]
        prediction = process_digit_article(process_punctuation(prediction))
    return prediction, answers


def vizwiz_prepare(prediction: str, answers: list[str]) -> tuple[str, list[str]]:
    """VizWiz's own evaluation (the `VQAEval` published with the data set, a fork of vqaEval.py): the prediction
    is always processed, the annotators' answers never (they are stored normalised)."""
    return process_digit_article(process_punctuation(clean_whitespace(prediction))), answers


def evalai_process(text: str) -> str:
    """EvalAIAnswerProcessor.__call__."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = process_punctuation(clean_whitespace(text), EVALAI_COMMA)
    return process_digit_article(text)
