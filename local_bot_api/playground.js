// The playground: one browser tab = one Telegram user chatting with the real bot through the local
// Bot API server. Text from the bot is rendered from its entities with DOM nodes only (no innerHTML).
"use strict";

const $ = (id) => document.getElementById(id);
const bubbles = new Map(); // message_id -> element
let me = null;
let typingTimer = null;

function userId() {
  let id = sessionStorage.getItem("playground-user");
  if (!id) {
    id = String(100000000 + Math.floor(Math.random() * 800000000));
    sessionStorage.setItem("playground-user", id);
  }
  return Number(id);
}

async function control(action, body) {
  const options = { method: "POST" };
  if (body instanceof FormData) options.body = body;
  else { options.body = JSON.stringify(body); options.headers = { "Content-Type": "application/json" }; }
  const response = await fetch(`/_control/${action}`, options);
  const data = await response.json();
  if (!data.ok) throw new Error(data.error || response.statusText);
  return data.result;
}

function showError(text) {
  $("error").textContent = text || "";
}

// --- rendering text with entities (offsets are UTF-16 code units, like JS strings) ---------------------
const SAFE_URL = /^(https?:|tg:|mailto:)/i;

function entityElement(entity, text) {
  const tags = { bold: "b", italic: "i", underline: "u", strikethrough: "s", code: "code" };
  if (tags[entity.type]) return document.createElement(tags[entity.type]);
  let el;
  switch (entity.type) {
    case "pre": {
      el = document.createElement("pre");
      const code = document.createElement("code");
      if (entity.language) code.dataset.language = entity.language;
      el.appendChild(code);
      el.inner = code;
      return el;
    }
    case "blockquote":
    case "expandable_blockquote":
      return document.createElement("blockquote");
    case "spoiler":
      el = document.createElement("span");
      el.className = "spoiler";
      el.addEventListener("click", () => el.classList.add("shown"));
      return el;
    case "text_link":
    case "url":
    case "email": {
      const href = entity.type === "text_link" ? entity.url
        : entity.type === "email" ? `mailto:${text}` : (/^https?:/i.test(text) ? text : `http://${text}`);
      if (!SAFE_URL.test(href || "")) return document.createElement("span");
      el = document.createElement("a");
      el.href = href;
      el.target = "_blank";
      el.rel = "noopener noreferrer";
      return el;
    }
    case "bot_command":
      el = document.createElement("a");
      el.className = "cmd";
      el.addEventListener("click", () => sendText(text.split("@")[0]));
      return el;
    case "mention":
    case "hashtag":
      el = document.createElement("span");
      el.className = "mention";
      return el;
    default:
      return document.createElement("span");
  }
}

function renderText(text, entities, start = 0, end = text.length) {
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
    const el = entityElement(entity, text.slice(entity.offset, entityEnd));
    (el.inner || el).appendChild(renderText(text, nested, entity.offset, entityEnd));
    fragment.appendChild(el);
    pos = entityEnd;
  }
  if (pos < end) fragment.appendChild(document.createTextNode(text.slice(pos, end)));
  return fragment;
}

// --- messages ------------------------------------------------------------------------------------------
function keyboard(markup, message) {
  const box = document.createElement("div");
  box.className = "keyboard";
  for (const row of markup.inline_keyboard || []) {
    const line = document.createElement("div");
    line.className = "row";
    for (const button of row) {
      let el;
      if (button.url && SAFE_URL.test(button.url)) {
        el = document.createElement("a");
        el.href = button.url;
        el.target = "_blank";
        el.rel = "noopener noreferrer";
      } else {
        el = document.createElement("button");
        el.type = "button";
        el.addEventListener("click", () => control("press_button", {
          user_id: me, chat_id: me, message_id: message.message_id, data: button.callback_data,
        }).catch((e) => showError(e.message)));
      }
      el.textContent = button.text;
      line.appendChild(el);
    }
    box.appendChild(line);
  }
  return box;
}

function replyKeyboard(markup) {
  const box = $("replykb");
  box.replaceChildren();
  if (!markup || !markup.keyboard) return;
  const kb = document.createElement("div");
  kb.className = "keyboard";
  for (const row of markup.keyboard) {
    const line = document.createElement("div");
    line.className = "row";
    for (const button of row) {
      const el = document.createElement("button");
      el.type = "button";
      el.textContent = typeof button === "string" ? button : button.text;
      el.addEventListener("click", () => sendText(el.textContent));
      line.appendChild(el);
    }
    kb.appendChild(line);
  }
  box.appendChild(kb);
}

function media(message) {
  const parts = [];
  if (message.photo) {
    const img = document.createElement("img");
    img.src = `/_control/files/${encodeURIComponent(message.photo[message.photo.length - 1].file_id)}`;
    img.alt = "photo";
    parts.push(img);
  }
  const other = message.document || message.sticker || message.voice || message.video;
  if (other) {
    const el = document.createElement("div");
    el.className = "file";
    const label = message.document ? `📄 ${other.file_name}` : message.sticker ? `sticker ${other.emoji || ""}`
      : message.voice ? `🎤 voice, ${other.duration} s` : `🎬 video, ${other.duration} s`;
    el.textContent = label;
    parts.push(el);
  }
  return parts;
}

function upsert(view) {
  const message = view.message;
  let el = bubbles.get(view.message_id);
  if (view.deleted) {
    if (el) el.remove();
    bubbles.delete(view.message_id);
    return;
  }
  const stick = $("log").scrollHeight - $("log").scrollTop - $("log").clientHeight < 80;
  if (!el) {
    el = document.createElement("div");
    el.className = view.from_bot ? "msg" : "msg me";
    bubbles.set(view.message_id, el);
    $("log").appendChild(el);
  }
  el.replaceChildren();
  if (message.reply_to_message) {
    const quote = document.createElement("div");
    quote.className = "quote";
    const target = message.reply_to_message;
    quote.textContent = target.text || target.caption || (target.photo ? "photo" : "message");
    el.appendChild(quote);
  }
  for (const part of media(message)) el.appendChild(part);
  const text = message.text ?? message.caption ?? "";
  el.appendChild(renderText(text, message.entities || message.caption_entities));
  if (message.reply_markup) el.appendChild(keyboard(message.reply_markup, message));
  if (view.from_bot && view.keyboard) replyKeyboard(view.keyboard.remove_keyboard ? null : view.keyboard);
  const meta = document.createElement("div");
  meta.className = "meta";
  const time = new Date(message.date * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  meta.textContent = view.edit_count ? `edited ×${view.edit_count} · ${time}` : time;
  el.appendChild(meta);
  if (stick) $("log").scrollTop = $("log").scrollHeight;
}

function showTyping(action) {
  clearTimeout(typingTimer);
  $("typing").textContent = action ? `bot is ${action === "typing" ? "typing" : action.replace(/_/g, " ")}…` : "";
  if (action) typingTimer = setTimeout(() => showTyping(null), 5000);
}

async function loadMenu() {
  const query = new URLSearchParams({ chat_id: me, user_id: me, language_code: $("lang").value });
  const { commands } = await (await fetch(`/_control/commands?${query}`)).json();
  const menu = $("menu");
  menu.replaceChildren();
  for (const item of commands.length ? commands : [{ command: "start", description: "" }]) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `/${item.command}`;
    button.title = item.description;
    button.addEventListener("click", () => sendText(`/${item.command}`));
    menu.appendChild(button);
  }
}

async function loadTranscript() {
  const data = await (await fetch(`/_control/transcript?chat_id=${me}`)).json();
  for (const view of data.messages) upsert(view);
  showTyping(data.action);
}

// --- sending -------------------------------------------------------------------------------------------
async function sendText(text) {
  showError("");
  try {
    await control("send_text", { user_id: me, text });
  } catch (e) {
    showError(e.message);
  }
}

async function sendForm(event) {
  event.preventDefault();
  const text = $("text").value;
  const files = [...$("photo").files];
  if (!text.trim() && !files.length) return;
  showError("");
  try {
    if (files.length) {
      const form = new FormData();
      form.append("user_id", me);
      if (text.trim()) form.append("caption", text);
      for (const file of files.slice(0, 10)) form.append("photo", file, file.name);
      await control(files.length > 1 ? "send_album" : "send_photo", form);
    } else {
      await control("send_text", { user_id: me, text });
    }
    $("text").value = "";
    $("photo").value = "";
    $("files").textContent = "";
  } catch (e) {
    showError(e.message);
  }
}

// --- start ---------------------------------------------------------------------------------------------
function listen() {
  const feed = new EventSource(`/_control/events?chat_id=${me}`);
  feed.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (data.type === "ready") { $("status").textContent = "online"; loadTranscript(); loadMenu(); }
    else if (data.type === "commands") loadMenu();
    else if (data.type === "chat_action") showTyping(data.action);
    else if (data.message) {
      if (data.type === "message" && data.message.from_bot) showTyping(null);
      upsert(data.message);
    }
  };
  feed.onerror = () => { $("status").textContent = "reconnecting…"; };
}

async function register() {
  const user = await control("create_user", {
    user_id: me, first_name: $("name").value || "Guest", language_code: $("lang").value,
  });
  sessionStorage.setItem("playground-name", user.first_name);
  sessionStorage.setItem("playground-lang", user.language_code);
}

async function main() {
  me = userId();
  $("name").value = sessionStorage.getItem("playground-name") || `Guest ${String(me).slice(-4)}`;
  const browserLanguage = (navigator.language || "en").slice(0, 2) === "ru" ? "ru" : "en";
  $("lang").value = sessionStorage.getItem("playground-lang") || browserLanguage;
  $("whoami").textContent = `id ${me}`;
  const bot = await (await fetch("/_control/bot")).json();
  $("botname").textContent = `${bot.me.first_name} @${bot.me.username}`;
  document.title = `${bot.me.first_name} — playground`;
  await register();
  $("name").addEventListener("change", register);
  $("lang").addEventListener("change", () => register().then(loadMenu));
  $("composer").addEventListener("submit", sendForm);
  $("photo").addEventListener("change", () => {
    $("files").textContent = [...$("photo").files].map((f) => f.name).join(", ");
  });
  $("newuser").addEventListener("click", () => {
    sessionStorage.clear();
    location.reload();
  });
  listen();
}

main().catch((e) => showError(`Cannot reach the server: ${e.message}`));
