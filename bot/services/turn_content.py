"""What a turn is made of: pictures, documents and text, from one message, an album or a split paste.

`collect` is the cheap part, done before admission (kinds, sizes, text length: a refusal costs nothing);
`parts` is the slow part, done after it (downloads, decoding, reading documents), and builds the protocol's
content parts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from aiogram import Bot
from aiogram.types import Message

from bot.formatting import is_blank
from bot.i18n import Translator
from bot.services.documents import DocumentReader, DocumentRef, DocumentText
from bot.services.downloads import TurnProblem
from bot.services.jobs import JobSubmitter
from bot.services.pictures import ImageRef, PictureFetcher, is_picture_document
from bot.settings import Settings

MIN_DOCUMENT_CHARS = 200  # a document squeezed below this is of no use to the model: say the text is too long


@dataclass
class TurnContent:
    images: list[ImageRef] = field(default_factory=list)
    documents: list[DocumentRef] = field(default_factory=list)
    text: str = ""
    limit: int = 0  # characters the turn may have, text and documents together


@dataclass
class TurnParts:
    content: list[dict[str, Any]]
    notes: list[str]  # interface HTML to tell the user before the answer (what a document left out)


class ContentCollector:
    def __init__(
        self, bot: Bot, settings: Settings, queue: JobSubmitter, pictures: PictureFetcher, documents: DocumentReader
    ):
        self.bot = bot
        self.queue = queue
        self.settings = settings
        self.pictures = pictures
        self.documents = documents

    async def collect(self, messages: list[Message]) -> TurnContent:
        found = TurnContent()
        texts: list[str] = []
        unsupported: str | None = None
        for message in messages:
            if message.photo:
                found.images.append(self.pictures.from_photo(message))
            elif message.document and not is_picture_document(message):
                if (document := self.documents.reference(message)) is None:
                    self.pictures.from_document(message)  # raises the right refusal (a picture we can't read?)
                found.documents.append(document)
            elif message.document:
                found.images.append(self.pictures.from_document(message))
            elif message.text is None and message.caption is None:
                unsupported = "unsupported.other"
            if text := (message.text or message.caption or "").strip():
                texts.append(text)
        reply = messages[0].reply_to_message
        if not found.images and reply and reply.photo and reply.from_user and reply.from_user.id != self.bot.id:
            found.images.append(self.pictures.from_photo(reply))  # "@bot what is this?" in reply to someone's photo
        text = await self._without_mention("\n".join(texts))
        found.text = "" if is_blank(text) else text  # zero-width characters only: no question
        if not found.images and not found.documents and not found.text:
            raise TurnProblem(unsupported or "empty_turn")
        found.limit = limit = self.settings.text_limit_for(await self.queue.model_context())
        if len(found.text) > limit or (found.documents and limit - len(found.text) < MIN_DOCUMENT_CHARS):
            raise TurnProblem("text_too_long", length=len(found.text), max_chars=limit)
        if len(found.images) > self.settings.max_images_per_turn:
            raise TurnProblem("too_many_images", max_images=self.settings.max_images_per_turn)
        return found

    async def _without_mention(self, text: str) -> str:
        me = await self.bot.me()
        if me.username:
            text = re.sub(rf"@{re.escape(me.username)}\b", "", text, flags=re.IGNORECASE)
        return text.strip()

    async def parts(self, found: TurnContent, chat_id: int, sender: int, t: Translator) -> TurnParts:
        parts: list[dict[str, Any]] = [
            {"type": "image", "key": await self.pictures.fetch(chat_id, image, sender)} for image in found.images
        ]
        # a photo alone: the usual wish is a description; a document alone: a summary
        default = t("document.default_question") if found.documents and not found.images else t("default_question")
        question = found.text or default
        notes, texts = [], []
        if found.documents:
            room = (found.limit - len(question)) // len(found.documents)
            for ref in found.documents:
                # the header and the blank lines around the text take their share of the room too
                document = await self.documents.read(chat_id, ref, room - len(ref.file_name) - 60)
                texts.append(f"{_header(document.name, document)}\n{document.text}")
                if document.truncated:
                    notes.append(_truncation_note(document, t))
        texts.append(question)
        parts.append({"type": "text", "text": "\n\n".join(texts)})
        return TurnParts(parts, notes)


def _header(name: str, document: DocumentText | None) -> str:
    """What the model reads before a document's text (plain text, in English: the model's own language)."""
    if document is not None and document.pages is not None and document.truncated:
        return f"File {name} (pages 1-{document.pages_read} of {document.pages}, shortened):"
    if document is not None and document.cut:
        return f"File {name} (shortened):"
    return f"File {name}:"


def _truncation_note(document: DocumentText, t: Translator) -> str:
    if document.pages is not None and document.pages_read is not None and document.pages_read < document.pages:
        return t(
            "document.pages_left_out", name=document.name, read=document.pages_read, pages=document.pages,
            chars=len(document.text),
        )
    return t("document.cut", name=document.name, chars=len(document.text))
