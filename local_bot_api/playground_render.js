// Rendering for the playground: the bot's text from its entities (DOM nodes only, never innerHTML), message
// bubbles with media, inline keyboards, reactions and replies, the live draft bubble, and a log that stays
// scrolled to the end while the user is there (also when a picture above finishes loading).
"use strict";

const SAFE_URL = /^(https?:|tg:|mailto:)/i;
const QUICK_REACTIONS = ["👍", "👎"];

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// --- text with entities (offsets are UTF-16 code units, like JS strings) --------------------------------
function entityElement(entity, text, onCommand) {
  const tags = { bold: "b", italic: "i", underline: "u", strikethrough: "s", code: "code" };
  if (tags[entity.type]) return document.createElement(tags[entity.type]);
  let node;
  switch (entity.type) {
    case "pre": {
      node = el("pre");
      const code = el("code");
      if (entity.language) code.dataset.language = entity.language;
      node.appendChild(code);
      node.inner = code;
      return node;
    }
    case "blockquote":
    case "expandable_blockquote":
      return el("blockquote");
    case "spoiler":
      node = el("span", "spoiler");
      node.addEventListener("click", () => node.classList.add("shown"));
      return node;
    case "text_link":
    case "url":
    case "email": {
      const href = entity.type === "text_link" ? entity.url
        : entity.type === "email" ? `mailto:${text}` : (/^https?:/i.test(text) ? text : `http://${text}`);
      if (!SAFE_URL.test(href || "")) return el("span");
      node = el("a");
      node.href = href;
      node.target = "_blank";
      node.rel = "noopener noreferrer";
      return node;
    }
    case "bot_command":
      node = el("a", "cmd");
      node.addEventListener("click", () => onCommand(text.split("@")[0]));
      return node;
    case "mention":
    case "hashtag":
      return el("span", "mention");
    default:
      return el("span");
  }
}

export function renderText(text, entities, onCommand = () => {}, start = 0, end = text.length) {
  const fragment = document.createDocumentFragment();
  const sorted = [...(entities || [])].sort((a, b) => a.offset - b.offset || b.length - a.length);
  let pos = start;
  let i = 0;
  while (i < sorted.length) {
    const entity = sorted[i];
    const entityEnd = Math.min(entity.offset + entity.length, end);
    if (entity.offset < pos || entity.offset >= end) { i += 1; continue; }
    if (entity.offset > pos) fragment.appendChild(document.createTextNode(text.slice(pos, entity.offset)));
    const nested = [];
    i += 1;
    while (i < sorted.length && sorted[i].offset < entityEnd) nested.push(sorted[i++]);
    const node = entityElement(entity, text.slice(entity.offset, entityEnd), onCommand);
    (node.inner || node).appendChild(renderText(text, nested, onCommand, entity.offset, entityEnd));
    fragment.appendChild(node);
    pos = entityEnd;
  }
  if (pos < end) fragment.appendChild(document.createTextNode(text.slice(pos, end)));
  return fragment;
}

// --- the log: follows new content while the user is at its end -----------------------------------------
export function createLog(node) {
  let follow = true; // the user is at the end (or has not scrolled away from it)
  let lastTop = 0;
  node.addEventListener("scroll", () => {
    // Only the user scrolls up. Our own scrolling and the browser's scroll anchoring (when a picture
    // above grows) move down, and must not make the log stop following.
    const atEnd = node.scrollHeight - node.scrollTop - node.clientHeight < 80;
    if (node.scrollTop < lastTop - 1) follow = atEnd;
    else if (atEnd) follow = true;
    lastTop = node.scrollTop;
  });
  const log = {
    node,
    changed() { // call after anything that may have made the log taller
      if (follow) node.scrollTop = node.scrollHeight;
      lastTop = node.scrollTop;
    },
    toEnd() { follow = true; log.changed(); },
    watch(img) { img.addEventListener("load", () => log.changed()); }, // a picture grows the log later
  };
  // The log gets shorter when bars around it fill in (the command menu, "typing…", the tray).
  new ResizeObserver(() => log.changed()).observe(node);
  return log;
}

// --- message bubbles ---------------------------------------------------------------------------------
function buttonRows(rows, makeButton) {
  const box = el("div", "keyboard");
  for (const row of rows) {
    const line = el("div", "row");
    for (const button of row) line.appendChild(makeButton(button));
    box.appendChild(line);
  }
  return box;
}

function inlineButton(button, actions) {
  let node;
  if (button.url && SAFE_URL.test(button.url)) {
    node = el("a");
    node.href = button.url;
    node.target = "_blank";
    node.rel = "noopener noreferrer";
  } else {
    node = el("button");
    node.type = "button";
    if (button.callback_data !== undefined) {
      node.addEventListener("click", () => actions.press(button.callback_data));
    } else node.disabled = true; // web apps, logins, games: not in the playground
  }
  node.textContent = button.text;
  return node;
}

// A reply keyboard (it replaces the user's keyboard, under the chat): each button sends its text.
export function replyKeyboard(markup, onText) {
  return buttonRows(markup.keyboard, (button) => {
    const node = el("button", "", typeof button === "string" ? button : button.text);
    node.type = "button";
    node.addEventListener("click", () => onText(node.textContent));
    return node;
  });
}

function humanSize(bytes) {
  return bytes >= 1048576 ? `${(bytes / 1048576).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

function media(message, log) {
  const parts = [];
  if (message.photo) {
    const img = el("img");
    img.alt = "photo";
    log.watch(img);
    img.src = `/_control/files/${encodeURIComponent(message.photo[message.photo.length - 1].file_id)}`;
    parts.push(img);
  }
  if (message.document) {
    const link = el("a", "file", `📄 ${message.document.file_name || "file"} · ${humanSize(message.document.file_size || 0)}`);
    link.href = `/_control/files/${encodeURIComponent(message.document.file_id)}`;
    link.download = message.document.file_name || "file";
    parts.push(link);
  }
  const other = message.sticker || message.voice || message.video;
  if (other) {
    parts.push(el("div", "file", message.sticker ? `sticker ${other.emoji || ""}`
      : message.voice ? `🎤 voice, ${other.duration} s` : `🎬 video, ${other.duration} s`));
  }
  return parts;
}

function reactionsRow(view, ctx, actions) {
  const row = el("span", "reactions");
  const counts = new Map(); // emoji -> [count, mine]
  for (const entry of view.reactions || []) {
    for (const reaction of entry.reaction) {
      const [count, mine] = counts.get(reaction.emoji) || [0, false];
      counts.set(reaction.emoji, [count + 1, mine || entry.actor_id === ctx.me]);
    }
  }
  for (const [emoji, [count, mine]] of counts) {
    const chip = el("span", mine ? "chip mine" : "chip", count > 1 ? `${emoji} ${count}` : emoji);
    chip.dataset.emoji = emoji;
    row.appendChild(chip);
  }
  if (view.from_bot) { // the user reacts to the bot's messages
    const mineNow = (view.reactions || []).find((r) => r.actor_id === ctx.me)?.reaction[0]?.emoji;
    for (const emoji of QUICK_REACTIONS) {
      const button = el("button", "react", emoji);
      button.type = "button";
      button.dataset.emoji = emoji;
      button.title = mineNow === emoji ? "Remove your reaction" : `React ${emoji}`;
      button.addEventListener("click", () => actions.react(mineNow === emoji ? null : emoji));
      row.appendChild(button);
    }
  }
  return row;
}

function senderName(message) {
  if (message.sender_chat && message.sender_chat.title) return message.sender_chat.title;
  return [message.from?.first_name, message.from?.last_name].filter(Boolean).join(" ");
}

// Creates or refreshes the bubble of a message view ({message_id, from_bot, message, reactions...}).
export function renderMessage(view, bubbles, log, ctx, actions) {
  const message = view.message;
  let node = bubbles.get(view.message_id);
  if (view.deleted) {
    if (node) node.remove();
    bubbles.delete(view.message_id);
    return;
  }
  if (!node) {
    node = el("div", view.from_bot ? "msg" : "msg me");
    node.dataset.id = view.message_id;
    bubbles.set(view.message_id, node);
    const later = [...bubbles.values()].find((b) => Number(b.dataset.id) > view.message_id && b !== node);
    log.node.insertBefore(node, later || document.getElementById("draft"));
  }
  node.replaceChildren();
  const mine = message.from?.id === ctx.me && !message.sender_chat;
  if (ctx.isGroup && !mine) node.appendChild(el("div", "sender", senderName(message)));
  if (message.reply_to_message) {
    const target = message.reply_to_message;
    node.appendChild(el("div", "quote", target.text || target.caption || (target.photo ? "photo" : "message")));
  }
  for (const part of media(message, log)) node.appendChild(part);
  const text = message.text ?? message.caption ?? "";
  node.appendChild(renderText(text, message.entities || message.caption_entities, actions.command));
  if (message.reply_markup) {
    const press = { press: (data) => actions.press(view, data) };
    node.appendChild(buttonRows(message.reply_markup.inline_keyboard || [], (b) => inlineButton(b, press)));
  }
  const foot = el("div", "foot");
  foot.appendChild(reactionsRow(view, ctx, { react: (emoji) => actions.react(view, emoji) }));
  const reply = el("button", "reply", "↩");
  reply.type = "button";
  reply.title = "Reply";
  reply.addEventListener("click", () => actions.reply(view));
  foot.appendChild(reply);
  const time = new Date(message.date * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  foot.appendChild(el("span", "meta", view.edit_count ? `edited ×${view.edit_count} · ${time}` : time));
  node.appendChild(foot);
  log.changed();
}

// The bot's draft (sendMessageDraft): one live bubble at the end of the log, with a stop button if allowed.
export function renderDraft(draft, log, actions) {
  let node = document.getElementById("draft");
  if (!draft) {
    if (node) node.remove();
    return;
  }
  if (!node) {
    node = el("div", "msg draft");
    node.id = "draft";
    log.node.appendChild(node);
  }
  node.replaceChildren();
  const body = el("div", "text");
  if (draft.text) body.appendChild(renderText(draft.text, draft.entities, actions.command));
  else body.textContent = "Thinking…";
  node.appendChild(body);
  const foot = el("div", "foot");
  if (draft.can_stop) {
    const stop = el("button", "stop", "■ Stop");
    stop.type = "button";
    stop.addEventListener("click", actions.stop);
    foot.appendChild(stop);
  }
  foot.appendChild(el("span", "meta", draft.stopped ? "stopped" : "typing a draft…"));
  node.appendChild(foot);
  log.changed();
}
