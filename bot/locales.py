"""Interface texts, English and Russian. Telegram HTML; `{name}` fields are filled (and escaped) by i18n.t.

Adding a language = adding a dict with the same keys; tests/test_bot_i18n.py checks that the keys match.
"""

from __future__ import annotations

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
        "• In groups, mention me or reply to my message; everyone has their own dialog with me.\n\n"
        "<b>Commands</b>\n"
        "/new: forget the dialog and start again\n"
        "/retry: answer the last question again\n"
        "/cancel: stop the answer being written\n\n"
        "I answer one message at a time; your limit is {limit}."
    ),
    "cmd.start": "What this bot does",
    "cmd.help": "How to use it",
    "cmd.new": "Start a new dialog",
    "cmd.retry": "Answer the last question again",
    "cmd.cancel": "Stop the current answer",
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
    "busy": "I am still answering your previous message. Wait for it, or send /cancel to stop it.",
    "limited": "You have reached your limit of {limit}. You can write again in {wait}.",
    "banned": "You have been blocked by the bot's administrator.",
    "unsupported.sticker": "I can't read stickers. Send a photo or text instead.",
    "unsupported.voice": "I can't listen to voice or audio yet. Please type your question.",
    "unsupported.video": "I can't watch videos. Send a photo (a screenshot works) instead.",
    "unsupported.file": "I only read pictures (JPEG, PNG, WebP, GIF) and text. This file is neither.",
    "unsupported.other": "I understand photos and text only.",
    "file_too_large": "This file is too large ({size} MB). Please send a picture under {max_mb} MB.",
    "text_too_long": "The message is too long ({length} characters). Please keep it under {max_chars}.",
    "too_many_images": "That is more pictures than I can take at once. Please send up to {max_images}.",
    "download_failed": "I could not download your picture. Please send it again.",
    "image.empty_image": "The file is empty. Please send the picture again.",
    "image.not_an_image": "This doesn't look like a picture. Please send a JPEG, PNG, WebP or GIF.",
    "image.corrupt_image": "The picture seems damaged or incomplete. Please send it again.",
    "image.image_too_large": "The picture has too many pixels. Please send a smaller one.",
    "image.image_too_big_bytes": "The file is too big. Please send a smaller or compressed picture.",
    "image.unsupported_image": "This kind of picture isn't supported. Please send it as a JPEG or PNG.",
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

RU = {
    "start": (
        "Привет, {name}! Я <b>OmniFusion</b>, модель, которая понимает картинки.\n\n"
        "Пришлите фото (или несколько альбомом) с вопросом или просто текст. "
        "Задавайте уточняющие вопросы: я помню наш диалог вместе с фото.\n\n"
        "/new начинает новый диалог, /retry отвечает на последний вопрос заново, /cancel останавливает ответ. "
        "Подробнее в /help."
    ),
    "help": (
        "<b>Как со мной общаться</b>\n"
        "• Фото с подписью или фото, а потом вопрос.\n"
        "• Альбом: все его картинки идут в один вопрос (до {max_images}).\n"
        "• Картинку можно прислать и файлом (до {max_mb} МБ).\n"
        "• В группах упомяните меня или ответьте на моё сообщение; у каждого свой диалог со мной.\n\n"
        "<b>Команды</b>\n"
        "/new: забыть диалог и начать заново\n"
        "/retry: ответить на последний вопрос ещё раз\n"
        "/cancel: остановить ответ\n\n"
        "Я отвечаю на одно сообщение за раз; ваш лимит: {limit}."
    ),
    "cmd.start": "Что умеет бот",
    "cmd.help": "Как пользоваться",
    "cmd.new": "Начать новый диалог",
    "cmd.retry": "Ответить на последний вопрос ещё раз",
    "cmd.cancel": "Остановить ответ",
    "cmd.setlimit": "Админ: задать лимит",
    "cmd.limits": "Админ: показать лимиты",
    "cmd.ban": "Админ: заблокировать пользователя",
    "cmd.unban": "Админ: разблокировать пользователя",
    "cmd.stats": "Админ: статистика и очередь",
    "new.done": "Готово, я забыл наш диалог. Что дальше?",
    "new.cancelled": "Остановил ответ и забыл наш диалог. Что дальше?",
    "retry.nothing": "Пока нет вопроса, который можно повторить.",
    "default_question": "Что на этой картинке? Опиши её.",
    "empty_turn": "Пришлите фото или вопрос.",
    "unknown_command": "Такой команды я не знаю. Смотрите /help.",
    "cancel.nothing": "Отменять нечего: я сейчас ничего вам не пишу.",
    "busy": "Я ещё отвечаю на ваше предыдущее сообщение. Дождитесь ответа или отправьте /cancel.",
    "limited": "Вы исчерпали лимит: {limit}. Снова написать можно через {wait}.",
    "banned": "Администратор бота заблокировал вам доступ.",
    "unsupported.sticker": "Стикеры я не понимаю. Пришлите фото или текст.",
    "unsupported.voice": "Голосовые и аудио я пока не слушаю. Напишите вопрос текстом.",
    "unsupported.video": "Видео я не смотрю. Пришлите фото (подойдёт скриншот).",
    "unsupported.file": "Я читаю только картинки (JPEG, PNG, WebP, GIF) и текст. Этот файл ни то ни другое.",
    "unsupported.other": "Я понимаю только фото и текст.",
    "file_too_large": "Файл слишком большой ({size} МБ). Пришлите картинку меньше {max_mb} МБ.",
    "text_too_long": "Сообщение слишком длинное ({length} символов). Уложитесь в {max_chars}.",
    "too_many_images": "Столько картинок сразу я не беру. Пришлите не больше {max_images}.",
    "download_failed": "Не получилось скачать картинку. Пришлите её ещё раз.",
    "image.empty_image": "Файл пустой. Пришлите картинку ещё раз.",
    "image.not_an_image": "Это не похоже на картинку. Пришлите JPEG, PNG, WebP или GIF.",
    "image.corrupt_image": "Картинка повреждена или не докачалась. Пришлите её ещё раз.",
    "image.image_too_large": "В картинке слишком много пикселей. Пришлите поменьше.",
    "image.image_too_big_bytes": "Файл слишком большой. Пришлите картинку поменьше или сжатую.",
    "image.unsupported_image": "Такой формат картинки не поддерживается. Пришлите JPEG или PNG.",
    "status.thinking": "⏳ Думаю…",
    "status.queued": "⏳ В очереди: перед вами {ahead}.",
    "status.next": "⏳ Вы следующий в очереди.",
    "status.offline": (
        "⚠️ Модель сейчас недоступна. Ваш вопрос ждёт в очереди до {until} UTC "
        "и получит ответ, как только модель вернётся."
    ),
    "answer.cancelled": "⏹ Остановлено.",
    "answer.empty": "(модель вернула пустой ответ)",
    "answer.offline_expired": "⚠️ Модель так и не появилась, вопрос устарел. Отправьте /retry, чтобы спросить снова.",
    "answer.timeout": "⚠️ Ответ занял слишком много времени и был отброшен. Отправьте /retry.",
    "answer.failed": "⚠️ У меня что-то сломалось. Отправьте /retry, чтобы попробовать снова.",
    "answer.lost": "⚠️ Ваше сообщение потерялось при перезапуске сервера. Пришлите его ещё раз (и фото тоже).",
    "error.expired": "⚠️ Перед вами было слишком много людей, и вопрос устарел. Отправьте /retry.",
    "error.image_missing": "⚠️ Картинка из начала диалога устарела. Пришлите её снова или начните /new.",
    "error.bad_image": "⚠️ Модель не смогла прочитать одну из картинок. Пришлите другую.",
    "error.too_many_images": "⚠️ В диалоге слишком много картинок. Начните новый: /new.",
    "error.too_long": "⚠️ Вопрос слишком длинный для модели. Сократите его.",
    "error.internal": "⚠️ Модель сломалась на этом ответе. Отправьте /retry, чтобы попробовать снова.",
    "error.dead_letter": "⚠️ Модель несколько раз не справилась с этим вопросом. Переформулируйте его или начните /new.",
    "error.bad_reply": "⚠️ Ответ модели пришёл повреждённым. Отправьте /retry, чтобы попробовать снова.",
    "error.other": "⚠️ Модель не смогла ответить ({code}). Отправьте /retry.",
    "admin.only": "Эта команда только для администраторов бота.",
    "admin.usage.setlimit": "Формат: /setlimit &lt;user_id|all&gt; &lt;N&gt;/&lt;minute|hour|day&gt; (или default)",
    "admin.usage.limits": "Формат: /limits [user_id]",
    "admin.usage.ban": "Формат: /ban &lt;user_id&gt;",
    "admin.usage.unban": "Формат: /unban &lt;user_id&gt;",
    "admin.setlimit.done": "Лимит для {who} теперь {limit}.",
    "admin.setlimit.reset": "{who} снова на лимите по умолчанию ({limit}).",
    "admin.limits.user": "Пользователь {user_id}: лимит {limit} ({source}), использовано {used} в текущем окне{banned}.",
    "admin.limits.all": "Лимит по умолчанию: {limit} ({source}).",
    "admin.limits.override": "\nПользователь {user_id}: {limit}",
    "admin.limits.banned": ", <b>заблокирован</b>",
    "admin.source.user": "задан для него",
    "admin.source.all": "задан через /setlimit all",
    "admin.source.env": "из DEFAULT_RATE_LIMIT",
    "admin.ban.done": "Пользователь {user_id} заблокирован.",
    "admin.ban.admin": "Администраторов блокировать нельзя.",
    "admin.unban.done": "Пользователь {user_id} разблокирован.",
    "admin.stats": (
        "<b>Статистика</b>\nПользователей: {users} (сегодня: {users_today})\nВопросов сегодня: {turns_today}\n"
        "Очередь: ждут {waiting}, в работе {running}\nОтветов в пути у этого бота: {inflight}\n"
        "Живых воркеров: {workers}"
    ),
    "unit.s": "{n} с",
    "unit.min": "{n} мин",
    "unit.h": "{n} ч",
    "unit.d": "{n} дн",
    "window.60": "минуту",
    "window.3600": "час",
    "window.86400": "день",
}

TEXTS = {"en": EN, "ru": RU}
