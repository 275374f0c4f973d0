// The search page: plain JS, no build step, no CDN. It calls GET /search and GET /documents/{id}.
"use strict";

const zh = (navigator.language || "").toLowerCase().startsWith("zh");
const T = zh ? {
  title: "向文档提问", question: "问题", count: "结果数", search: "搜索", close: "关闭",
  placeholder: "例如：外国人可以用支付宝激活医保电子凭证吗？", searching: "正在搜索…",
  took: (n, ms) => `${n} 条结果，用时 ${ms} 毫秒`, none: "没有找到相关段落。",
  unanswerable: "资料中很可能没有这个问题的答案；下面是最接近的段落。",
  confidence: c => `（置信度 ${Math.round(c * 100)}%）`,
  open: "在原文中查看", page: p => `第 ${p} 页`, pages: (a, b) => `第 ${a}–${b} 页`, lines: (a, b) => a === b ? `第 ${a} 行` : `第 ${a}–${b} 行`,
  empty: "请先输入一个问题。", tooLong: "问题太长了，请缩短后再试（一次问一件事）。", invalid: "这个问题里有无法识别的字符，请重新输入。",
  network: "无法连接到服务器，请确认服务正在运行后重试。", server: "服务器出错了，请稍后再试。", docMissing: "找不到这份文档（索引可能刚刚更新）。",
  loading: "正在打开文档…",
} : {
  title: "Ask the documents", question: "Question", count: "Results", search: "Search", close: "Close",
  placeholder: "e.g. Can a foreigner activate the e-voucher through Alipay?", searching: "Searching…",
  took: (n, ms) => `${n} result${n === 1 ? "" : "s"} in ${ms} ms`, none: "No passages found.",
  unanswerable: "The documents most likely do not answer this; the closest passages follow.",
  confidence: c => ` (confidence ${Math.round(c * 100)}%)`,
  open: "Show in document", page: p => `page ${p}`, pages: (a, b) => `pages ${a}–${b}`, lines: (a, b) => a === b ? `line ${a}` : `lines ${a}–${b}`,
  empty: "Please type a question first.", tooLong: "The question is too long; shorten it (ask one thing at a time).",
  invalid: "The question contains characters that cannot be read; please type it again.",
  network: "Cannot reach the server; check that it is running and try again.", server: "The server had a problem; please try again shortly.",
  docMissing: "This document is not in the index (it may have just been updated).", loading: "Opening the document…",
};

const $ = id => document.getElementById(id);
const form = $("form"), q = $("q"), k = $("k"), statusLine = $("status"), notice = $("notice"), results = $("results");
let lastAnswer = null;

document.documentElement.lang = zh ? "zh" : "en";
document.title = T.title;
document.querySelectorAll("[data-i18n]").forEach(el => { el.textContent = T[el.dataset.i18n]; });
q.placeholder = T.placeholder;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

// Text with [start, end) marked; offsets relative to `text`, clamped.
function marked(text, start, end) {
  start = Math.max(0, Math.min(text.length, start));
  end = Math.max(start, Math.min(text.length, end));
  const span = document.createDocumentFragment();
  span.append(text.slice(0, start), el("mark", {}, text.slice(start, end)), text.slice(end));
  return span;
}

function where(c) {
  const parts = [c.document];
  if (c.section && c.section.length) parts.push(c.section.join(" › "));
  if (c.page_start != null) parts.push(c.page_start === c.page_end ? T.page(c.page_start) : T.pages(c.page_start, c.page_end));
  parts.push(T.lines(c.line_start, c.line_end));
  return parts.join(" · ");
}

// A 4xx/5xx answer in the user's words: the server's `detail` names fields, people don't.
function explain(status, body) {
  const detail = (body && body.detail) || "";
  if (status === 422 && /must not be empty/.test(detail)) return T.empty;
  if (status === 422 && /(limit|too long|characters long|tokens long|at most)/.test(detail)) return T.tooLong;
  if (status === 422 && /(Unicode|control character|UTF-8)/.test(detail)) return T.invalid;
  if (status === 404) return T.docMissing;
  if (status >= 500) return T.server;
  return detail.replace(/^[a-z_.]+: /, "") || T.server;
}

function showError(message) {
  statusLine.textContent = "";
  notice.hidden = true;
  results.replaceChildren(el("li", { class: "error", role: "alert" }, message));
}

async function getJSON(url) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 30000);
  try {
    const response = await fetch(url, { signal: abort.signal });
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    return { ok: response.ok, status: response.status, body };
  } finally {
    clearTimeout(timer);
  }
}

async function search(question, count, push) {
  if (!question.trim()) { showError(T.empty); return; }
  const params = new URLSearchParams({ q: question, k: String(count) });
  if (push) history.pushState(null, "", "?" + params);
  statusLine.textContent = T.searching;
  let answer;
  try {
    answer = await getJSON(`/search?top_k=${count}&q=${encodeURIComponent(question)}`);
  } catch (_) {
    showError(T.network);
    return;
  }
  if (!answer.ok) { showError(explain(answer.status, answer.body)); return; }
  render(answer.body);
}

function render(answer) {
  lastAnswer = answer;
  statusLine.textContent = T.took(answer.passages.length, answer.took_ms.toFixed(0));
  notice.hidden = answer.answerable;
  notice.textContent = answer.answerable ? "" : T.unanswerable + (answer.confidence != null ? T.confidence(answer.confidence) : "");
  if (!answer.passages.length) { results.replaceChildren(el("li", {}, T.none)); return; }
  results.replaceChildren(...answer.passages.map((p, i) => {
    const c = p.citation;
    const open = el("button", { type: "button", class: "open", "data-hit": String(i) }, T.open);
    open.addEventListener("click", () => openDocument(i, open));
    return el("li", { class: "hit" },
      el("div", { class: "text" }, marked(p.text, p.highlight.start - c.start, p.highlight.end - c.start)),
      el("p", { class: "cite" }, `${p.rank}. ${where(c)}`),
      open);
  }));
}

async function openDocument(i, opener) {
  const hit = lastAnswer.passages[i], c = hit.citation, dialog = $("doc"), text = $("doc-text");
  $("doc-title").textContent = c.title || c.document;
  $("doc-meta").textContent = where(c);
  text.textContent = T.loading;
  dialog.showModal();
  dialog.addEventListener("close", () => opener.focus(), { once: true });
  let doc;
  try {
    doc = await getJSON(`/documents/${c.document.split("/").map(encodeURIComponent).join("/")}`);
  } catch (_) {
    text.textContent = T.network;
    return;
  }
  if (!doc.ok) { text.textContent = explain(doc.status, doc.body); return; }
  text.replaceChildren(marked(doc.body.text, c.start, c.end));
  const mark = text.querySelector("mark");
  mark.id = "cited";
  mark.scrollIntoView({ block: "center" });
}

$("doc-close").addEventListener("click", () => $("doc").close());
form.addEventListener("submit", e => { e.preventDefault(); search(q.value, Number(k.value), true); });

function fromURL() {
  const params = new URLSearchParams(location.search);
  const question = params.get("q") || "";
  const count = Math.max(1, Math.min(50, Math.floor(Number(params.get("k"))) || 5));
  q.value = question;
  if (![...k.options].some(o => Number(o.value) === count)) k.append(el("option", {}, String(count)));
  k.value = String(count);
  if (question) search(question, count, false);
}
window.addEventListener("popstate", fromURL);
fromURL();
// `autofocus` alone can land after the first keystrokes on a slow machine; focus now.
q.focus();
