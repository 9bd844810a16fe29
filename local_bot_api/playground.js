// The playground: one browser = one Telegram user chatting with the real bot through the local Bot API
// server, in a private chat or (toggle) in a group with the bot. Everything goes through /_control/ as that
// user would act in a Telegram client; the live feed (/_control/events) brings the bot's side.
import { createLog, renderDraft, renderMessage, replyKeyboard } from "./playground_render.js";

const $ = (id) => document.getElementById(id);
const KEY = { user: "playground-user", name: "playground-name", lang: "playground-lang", group: "playground-group" };
const state = { me: 0, chat: 0, isGroup: false, bot: null, replyTo: null, feed: null, draftTimer: null };
const bubbles = new Map(); // message_id -> element
let log;
let typingTimer = null;

async function control(action, body) {
  const options = { method: "POST" };
  if (body instanceof FormData) options.body = body;
  else { options.body = JSON.stringify(body); options.headers = { "Content-Type": "application/json" }; }
  const response = await fetch(`/_control/${action}`, options);
  const data = await response.json();
  if (!data.ok) throw new Error(data.error || response.statusText);
  return data.result;
}

const getJson = async (url) => (await fetch(url)).json();
const showError = (text) => { $("error").textContent = text || ""; };
const act = (promise) => promise.catch((e) => showError(e.message));
const who = () => ({ user_id: state.me, chat_id: state.chat });

// --- what the user is shown besides messages ---------------------------------------------------------
function toast(text) {
  const box = $("toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(box.timer);
  box.timer = setTimeout(() => { box.hidden = true; }, 3000);
}

function alertBox(text) { // answerCallbackQuery(show_alert=True): a dialog the user must close
  $("alert-text").textContent = text;
  $("alert").hidden = false;
  $("alert-ok").focus();
}

function showTyping(action) {
  clearTimeout(typingTimer);
  $("typing").textContent = action ? `bot is ${action === "typing" ? "typing" : action.replace(/_/g, " ")}…` : "";
  if (action) typingTimer = setTimeout(() => showTyping(null), 5000);
}

function showDraft(draft) {
  clearTimeout(state.draftTimer);
  renderDraft(draft, log, { stop: () => act(control("stop_draft", who())), command: sendText });
  // Telegram drops a draft that is not refreshed for 30 s; the server says so too on the next read.
  if (draft) state.draftTimer = setTimeout(() => showDraft(null), (state.bot.draft_lifetime || 30) * 1000);
}

function showIntro() { // an empty chat shows the bot's description, as Telegram's "What can this bot do?"
  const texts = Object.fromEntries(state.bot.descriptions.filter((d) => d.field === "description")
    .map((d) => [d.language_code, d.text]));
  const text = texts[$("lang").value] || texts[""] || "";
  $("intro").textContent = text;
  $("intro").hidden = !text || bubbles.size > 0;
}

function showReplyKeyboard(markup) {
  $("replykb").replaceChildren(...(markup && markup.keyboard ? [replyKeyboard(markup, sendText)] : []));
}

function setReply(view) {
  state.replyTo = view ? view.message_id : null;
  const message = view && view.message;
  $("replying-text").textContent = message ? (message.text || message.caption || "a message").slice(0, 80) : "";
  $("replying").hidden = !view;
  if (view) $("text").focus();
}

const messageActions = {
  press: (view, data) => act(control("press_button", { ...who(), message_id: view.message_id, data })),
  react: (view, emoji) => act(control("react", { ...who(), message_id: view.message_id, emoji })),
  reply: (view) => setReply(view),
  command: (text) => sendText(text),
};

function upsert(view) {
  renderMessage(view, bubbles, log, { me: state.me, isGroup: state.isGroup }, messageActions);
  if (view.from_bot && view.keyboard) showReplyKeyboard(view.keyboard.remove_keyboard ? null : view.keyboard);
  showIntro();
}

// --- loading -------------------------------------------------------------------------------------------
async function loadMenu() {
  const query = new URLSearchParams({ chat_id: state.chat, user_id: state.me, language_code: $("lang").value });
  const { commands } = await getJson(`/_control/commands?${query}`);
  const menu = $("menu");
  menu.replaceChildren();
  const items = (commands.length ? commands : [{ command: "start", description: "" }]).map((c) => [`/${c.command}`, c.description]);
  if (state.isGroup) items.unshift([`@${state.bot.me.username}`, "Mention the bot (privacy mode: it sees only mentions, commands and replies)"]);
  for (const [label, description] of items) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.title = description;
    button.addEventListener("click", () => (label.startsWith("@") ? mention() : sendText(label)));
    menu.appendChild(button);
  }
}

function mention() {
  const prefix = `@${state.bot.me.username} `;
  if (!$("text").value.startsWith(prefix)) $("text").value = prefix + $("text").value;
  $("text").focus();
}

async function loadTranscript() {
  const data = await getJson(`/_control/transcript?chat_id=${state.chat}`);
  for (const view of data.messages) upsert(view);
  showTyping(data.action);
  showDraft(data.draft);
  showIntro();
  log.toEnd(); // a reload lands at the bottom (and stays there while pictures load)
}

async function loadPlayground() {
  const { banner, samples } = await getJson("/_control/playground");
  $("banner").textContent = banner;
  $("banner").title = banner;
  $("banner").hidden = !banner;
  const tray = $("tray");
  tray.replaceChildren();
  for (const sample of samples) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sample";
    button.title = sample.caption ? `Send with "${sample.caption}"` : "Send this picture";
    const img = document.createElement("img");
    img.src = sample.url;
    img.alt = sample.name;
    button.appendChild(img);
    button.addEventListener("click", () => sendSample(sample));
    tray.appendChild(button);
  }
  tray.hidden = samples.length === 0;
}

// --- sending -------------------------------------------------------------------------------------------
function captionFor(text) { // in a group the bot only sees messages that mention it (or replies to it)
  const mentioned = text.includes(`@${state.bot.me.username}`);
  return state.isGroup && text && !mentioned && !state.replyTo ? `@${state.bot.me.username} ${text}` : text;
}

function sent() {
  $("text").value = "";
  $("attach").value = "";
  $("files").textContent = "";
  setReply(null);
}

async function sendText(text) {
  showError("");
  try {
    await control("send_text", { ...who(), text, reply_to: state.replyTo });
    setReply(null);
  } catch (e) { showError(e.message); }
}

async function sendSample(sample) {
  showError("");
  const typed = $("text").value.trim();
  try {
    await control("send_sample", { ...who(), name: sample.name, caption: typed || captionFor(sample.caption), reply_to: state.replyTo });
    sent();
  } catch (e) { showError(e.message); }
}

function form(fields, files) {
  const body = new FormData();
  for (const [key, value] of Object.entries({ ...who(), ...fields })) if (value) body.append(key, value);
  for (const [part, file] of files) body.append(part, file, file.name);
  return body;
}

async function sendForm(event) {
  event.preventDefault();
  const text = $("text").value;
  const files = [...$("attach").files];
  if (!text.trim() && !files.length) return;
  showError("");
  try {
    // Pictures go as photos (several: an album); anything else as a document, like a Telegram client.
    const photos = files.filter((f) => /^image\/(png|jpeg|webp|gif|bmp)$/.test(f.type)).slice(0, 10);
    const documents = files.filter((f) => !photos.includes(f));
    let caption = text.trim() ? text : null;
    if (photos.length) {
      await control(photos.length > 1 ? "send_album" : "send_photo",
        form({ caption, reply_to: photos.length > 1 ? null : state.replyTo }, photos.map((f) => ["photo", f])));
      caption = null;
    }
    for (const file of documents) {
      await control("send_document", form({ caption, reply_to: state.replyTo }, [["document", file]]));
      caption = null;
    }
    if (!files.length) await control("send_text", { ...who(), text, reply_to: state.replyTo });
    sent();
  } catch (e) { showError(e.message); }
}

// --- the chat: private, or a group with the same user and the bot ----------------------------------------
function listen() {
  if (state.feed) state.feed.close();
  const feed = state.feed = new EventSource(`/_control/events?chat_id=${state.chat}`);
  feed.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (data.type === "ready") { $("status").textContent = "online"; act(loadTranscript()); act(loadMenu()); }
    else if (data.type === "commands") act(loadMenu());
    else if (data.type === "playground") act(loadPlayground());
    else if (data.type === "profile") act(loadBot().then(showIntro));
    else if (data.type === "chat_action") showTyping(data.action);
    else if (data.type === "draft") showDraft(data.draft);
    else if (data.type === "callback_answer" && data.user_id === state.me) {
      if (data.answer.text) (data.answer.show_alert ? alertBox : toast)(data.answer.text);
    } else if (data.message) {
      if (data.type === "message" && data.message.from_bot) showTyping(null);
      upsert(data.message);
    }
  };
  feed.onerror = () => { $("status").textContent = "reconnecting…"; };
}

async function openChat() {
  state.isGroup = $("group").checked;
  localStorage.setItem(KEY.group, state.isGroup ? "1" : "");
  state.chat = state.isGroup ? -1002000000000 - (state.me % 1000000000) : state.me;
  if (state.isGroup) {
    const { chat } = await getJson(`/_control/transcript?chat_id=${state.chat}`);
    if (!chat) {
      await control("create_group", { title: `${$("name").value}'s group`, members: [state.me], chat_id: state.chat });
    }
  }
  bubbles.clear();
  log.node.replaceChildren($("intro"));
  setReply(null);
  showDraft(null);
  $("text").placeholder = state.isGroup
    ? "Message the group: the bot sees /commands, @mentions and replies to it"
    : "Message (or a caption for the attachment)";
  listen();
}

async function register() {
  const user = await control("create_user", {
    user_id: state.me, first_name: $("name").value || "Guest", language_code: $("lang").value,
  });
  localStorage.setItem(KEY.name, user.first_name);
  localStorage.setItem(KEY.lang, user.language_code);
}

async function loadBot() {
  state.bot = await getJson("/_control/bot");
  $("botname").textContent = `${state.bot.me.first_name} @${state.bot.me.username}`;
  document.title = `${state.bot.me.first_name} — playground`;
}

function userId() { // remembered, so a reload or a restart of `make demo` shows the same chat
  let id = localStorage.getItem(KEY.user);
  if (!id) {
    id = String(100000000 + Math.floor(Math.random() * 800000000));
    localStorage.setItem(KEY.user, id);
  }
  return Number(id);
}

async function main() {
  log = createLog($("log"));
  state.me = userId();
  $("name").value = localStorage.getItem(KEY.name) || `Guest ${String(state.me).slice(-4)}`;
  const browserLanguage = (navigator.language || "en").slice(0, 2) === "ru" ? "ru" : "en";
  $("lang").value = localStorage.getItem(KEY.lang) || browserLanguage;
  $("group").checked = Boolean(localStorage.getItem(KEY.group));
  $("whoami").textContent = `id ${state.me}`;
  await loadBot();
  await register();
  await loadPlayground();
  $("name").addEventListener("change", () => act(register()));
  $("lang").addEventListener("change", () => act(register().then(loadMenu).then(showIntro)));
  $("group").addEventListener("change", () => act(openChat()));
  $("composer").addEventListener("submit", sendForm);
  $("attach").addEventListener("change", () => {
    $("files").textContent = [...$("attach").files].map((f) => f.name).join(", ");
  });
  $("replying-cancel").addEventListener("click", () => setReply(null));
  $("alert-ok").addEventListener("click", () => { $("alert").hidden = true; });
  $("newuser").addEventListener("click", () => {
    for (const key of Object.values(KEY)) localStorage.removeItem(key);
    location.reload();
  });
  await openChat();
}

main().catch((e) => showError(`Cannot reach the server: ${e.message}`));
