"""Interface texts, English and Russian. Telegram HTML; `{name}` fields are filled (and escaped) by i18n.t.

Adding a language = adding a dict with the same keys (Russian: bot/locales_ru.py); tests/test_bot_units.py
checks that the keys match.
"""

from __future__ import annotations

from bot.locales_ru import RU

EN = {
    "start": (
        "Hi, {name}! I am <b>OmniFusion</b>, a model that understands pictures.\n\n"
        "Send me a photo (or several as an album) with a question, or just text. "
        "Ask follow-up questions: I remember our dialog, photos included.\n\n"
        "/new starts a fresh dialog, /retry answers your last question again, /cancel stops an answer. "
        "More in /help."
    ),
    "help": (
        "<b>How to talk to me</b>\n"
        "• A photo with a caption, or a photo and then a question.\n"
        "• An album: all its pictures go into one question (up to {max_images}).\n"
        "• A picture sent as a file works too (up to {max_mb} MB).\n"
        "• A document: PDF (up to {max_pages} pages are read), .txt, .md, .csv, .json or source code; "
        "add your question as its caption.\n"
        "• Text up to {max_chars} characters (what the model can read at once), documents included.\n"
        "• In groups, mention me or reply to my message; everyone has their own dialog with me.\n\n"
        "<b>Commands</b>\n"
        "/new: forget the dialog and start again\n"
        "/retry: answer the last question again\n"
        "/cancel: stop the answer being written\n"
        "/settings: answer length, creativity, language\n"
        "/forget: delete everything I keep about you\n\n"
        "A message you send while I am answering is my next question. Your limit is {limit}."
    ),
    "start.demo": (
        "<i>This bot runs the demo model: a small OmniFusion trained by this project on pictures of coloured "
        "shapes. Ask it about colours, shapes, how many and where, in English or Russian; real photos are beyond "
        "it. For real photos, the operator runs the worker with the real weights: MODEL_PRESET=omnifusion-1.1 "
        "and MODEL_PATH=&lt;folder with the weights&gt; (see the README).</i>"
    ),
    "start.admin": (
        "<b>You are an administrator.</b> Your commands:\n"
        "/setlimit &lt;user_id|all&gt; &lt;N&gt;/&lt;minute|hour|day&gt;: a rate limit (or default)\n"
        "/limits [user_id]: the limits and a user's usage\n"
        "/ban &lt;user_id&gt;, /unban &lt;user_id&gt;: block or unblock someone\n"
        "/stats: users, turns, the queue and the workers"
    ),
    "bot.description": (
        "OmniFusion, a model that understands pictures. Send a photo with a question, a document (PDF, text, "
        "code) or just text; I stream the answer and remember our dialog. /settings for answer length and "
        "language, /forget to delete your data."
    ),
    "bot.short_description": "Photos, documents and questions, answered by the OmniFusion multimodal model.",
    "cmd.start": "What this bot does",
    "cmd.help": "How to use it",
    "cmd.new": "Start a new dialog",
    "cmd.retry": "Answer the last question again",
    "cmd.cancel": "Stop the current answer",
    "cmd.settings": "Answer length, creativity, language",
    "cmd.forget": "Delete everything the bot keeps about you",
    "cmd.setlimit": "Admin: set a rate limit",
    "cmd.limits": "Admin: show rate limits",
    "cmd.ban": "Admin: block a user",
    "cmd.unban": "Admin: unblock a user",
    "cmd.stats": "Admin: usage and queue",
    "new.done": "Done, I forgot our dialog. What next?",
    "new.cancelled": "Stopped the answer and forgot our dialog. What next?",
    "retry.nothing": "There is no question to repeat yet.",
    "default_question": "What is in this picture? Describe it.",
    "empty_turn": "Send me a photo or a question.",
    "unknown_command": "I don't know this command. See /help.",
    "cancel.nothing": "Nothing to cancel: I am not writing anything for you.",
    "queued": "📝 Got it: I will answer this as soon as I finish the current answer.",
    "busy": (
        "I am still answering, and your next message is already waiting. Send this one again after the "
        "answer, or /cancel to stop it."
    ),
    "limited": "You have reached your limit of {limit}. You can write again in {wait}.",
    "banned": "You have been blocked by the bot's administrator.",
    "unsupported.sticker": "I can't read stickers. Send a photo or text instead.",
    "unsupported.voice": "I can't listen to voice or audio yet. Please type your question.",
    "unsupported.video": "I can't watch videos. Send a photo (a screenshot works) instead.",
    "unsupported.file": (
        "I read pictures (JPEG, PNG, WebP, GIF), PDFs and text files (.txt, .md, .csv, .json, source code). "
        "This file is none of them."
    ),
    "unsupported.other": "I understand photos and text only.",
    "file_too_large": "This file is too large ({size} MB). Please send one under {max_mb} MB.",
    "text_too_long": (
        "The message is too long ({length} characters): the model reads up to {max_chars} at once. "
        "Please shorten it, or send it as a file."
    ),
    "too_many_images": "That is more pictures than I can take at once. Please send up to {max_images}.",
    "download_failed": "I could not download your file. Please send it again.",
    "image.empty_image": "The file is empty. Please send the picture again.",
    "image.not_an_image": "This doesn't look like a picture. Please send a JPEG, PNG, WebP or GIF.",
    "image.corrupt_image": "The picture seems damaged or incomplete. Please send it again.",
    "image.image_too_large": "The picture has too many pixels. Please send a smaller one.",
    "image.image_too_big_bytes": "The file is too big. Please send a smaller or compressed picture.",
    "image.unsupported_image": "This kind of picture isn't supported. Please send it as a JPEG or PNG.",
    "document.default_question": "Summarize this document.",
    "document.empty": "The file {name} has no text in it.",
    "document.encrypted": "The PDF {name} is password-protected. Please send a copy without a password.",
    "document.no_text": (
        "The PDF {name} has no text layer (it looks scanned). Send its pages as photos instead, "
        "or a PDF with text in it."
    ),
    "document.broken": "I could not read the PDF {name}: it seems damaged. Please send it again.",
    "document.too_slow": "Reading {name} took longer than {seconds} s, so I gave up. Please send a smaller file.",
    "document.pages_left_out": (
        "📄 {name} has {pages} pages: I read the first {read}, and the model sees {chars} characters of them."
    ),
    "document.cut": "📄 {name} is long: the model sees its first {chars} characters.",
    "button.stop": "⏹ Stop",
    "button.regen": "🔄 Regenerate",
    "button.new": "✨ New dialog",
    "button.old": "↩️ Replaced by a newer answer",
    "button.not_yours": "Only the person who asked can use these buttons.",
    "button.stale": "These buttons are out of date.",
    "button.stopping": "Stopping…",
    "button.replaced": "This answer was replaced by a newer one.",
    "button.forget_yes": "🗑 Yes, delete",
    "button.forget_no": "Cancel",
    "settings.summary": (
        "<b>Settings</b>\nAnswer length: {length}\nCreativity: {creativity}\nLanguage: {language}"
    ),
    "settings.length.short": "Short",
    "settings.length.medium": "Medium",
    "settings.length.long": "Long",
    "settings.creativity.precise": "Precise",
    "settings.creativity.balanced": "Balanced",
    "settings.creativity.creative": "Creative",
    "settings.language.auto": "As Telegram",
    "settings.language.en": "English",
    "settings.language.ru": "Русский",
    "settings.saved": "Saved.",
    "forget.confirm": (
        "Delete everything I keep about you: our dialogs in every chat, your settings and the pictures only "
        "you sent? This cannot be undone."
    ),
    "forget.done": "Done: I deleted your dialogs, settings and pictures.",
    "forget.kept": "Nothing was deleted.",
    "status.thinking": "⏳ Thinking…",
    "status.queued": "⏳ In the queue: {ahead} ahead of you.",
    "status.next": "⏳ You are next in the queue.",
    "status.offline": (
        "⚠️ The model is offline right now. Your question stays in the queue until {until} UTC "
        "and will be answered as soon as the model is back."
    ),
    "answer.cancelled": "⏹ Stopped.",
    "answer.empty": "(the model returned an empty answer)",
    "answer.offline_expired": "⚠️ The model stayed offline, so your question expired. Send /retry to ask again.",
    "answer.timeout": "⚠️ The answer took too long and was dropped. Send /retry to ask again.",
    "answer.failed": "⚠️ Something went wrong on my side. Send /retry to try again.",
    "answer.lost": "⚠️ Your message was lost in a server restart. Please send it again (photos too).",
    "error.expired": "⚠️ Too many people were ahead of you and your question expired. Send /retry.",
    "error.image_missing": "⚠️ A picture from earlier in our dialog has expired. Send it again or /new.",
    "error.bad_image": "⚠️ The model could not read one of the pictures. Please send another one.",
    "error.too_many_images": "⚠️ There are too many pictures in this dialog. Start a /new one.",
    "error.too_long": "⚠️ This question is too long for the model. Please shorten it.",
    "error.internal": "⚠️ The model failed while answering. Send /retry to try again.",
    "error.dead_letter": "⚠️ The model failed on this question several times. Try rephrasing it, or /new.",
    "error.bad_reply": "⚠️ The model's answer arrived garbled. Send /retry to try again.",
    "error.other": "⚠️ The model could not answer ({code}). Send /retry to try again.",
    "admin.only": "This command is for the bot's administrators.",
    "admin.usage.setlimit": "Usage: /setlimit &lt;user_id|all&gt; &lt;N&gt;/&lt;minute|hour|day&gt; (or default)",
    "admin.usage.limits": "Usage: /limits [user_id]",
    "admin.usage.ban": "Usage: /ban &lt;user_id&gt;",
    "admin.usage.unban": "Usage: /unban &lt;user_id&gt;",
    "admin.setlimit.done": "Limit for {who} is now {limit}.",
    "admin.setlimit.reset": "{who} is back on the default limit ({limit}).",
    "admin.limits.user": "User {user_id}: limit {limit} ({source}), used {used} in the current window{banned}.",
    "admin.limits.all": "Default limit: {limit} ({source}).",
    "admin.limits.override": "\nUser {user_id}: {limit}",
    "admin.limits.banned": ", <b>banned</b>",
    "admin.source.user": "set for this user",
    "admin.source.all": "set with /setlimit all",
    "admin.source.env": "from DEFAULT_RATE_LIMIT",
    "admin.ban.done": "User {user_id} is banned.",
    "admin.ban.admin": "Administrators cannot be banned.",
    "admin.unban.done": "User {user_id} is unbanned.",
    "admin.stats": (
        "<b>Stats</b>\nUsers: {users} (today: {users_today})\nTurns today: {turns_today}\n"
        "Queue: {waiting} waiting, {running} being answered\nAnswers in flight here: {inflight}\n"
        "Live workers: {workers}"
    ),
    "unit.s": "{n} s",
    "unit.min": "{n} min",
    "unit.h": "{n} h",
    "unit.d": "{n} d",
    "window.60": "minute",
    "window.3600": "hour",
    "window.86400": "day",
}

TEXTS = {"en": EN, "ru": RU}
