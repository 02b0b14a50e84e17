/* agent-server chat page.
 *
 * Plain browser JavaScript, no build step and no dependencies. It talks to the same
 * /api as any client: streams a turn from POST /api/chat/message/stream (fetch +
 * ReadableStream, parsed as server-sent events by hand, since EventSource cannot POST
 * or send an Authorization header), lists, reloads and deletes sessions.
 *
 * Safety: nothing the model or a tool wrote is ever parsed as HTML. The Markdown
 * renderer below builds DOM nodes and sets text with text nodes only; links keep
 * http(s)/mailto URLs and nothing else. The page's CSP forbids inline script anyway.
 */
"use strict";

(() => {
  // ---------------------------------------------------------------------------
  // DOM helpers
  // ---------------------------------------------------------------------------

  /** `el("div", {class: "x"}, "text", child)`: strings become text nodes, never HTML. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------
  // Markdown → DOM (a safe subset: what chat models write)
  //
  // Hand-written because a vendored renderer would hand us an HTML string to
  // sanitise; building nodes directly leaves nothing to sanitise.
  // ---------------------------------------------------------------------------

  const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

  function safeUrl(raw) {
    try {
      const url = new URL(raw, window.location.origin);
      return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
    } catch {
      return null;
    }
  }

  const INLINE = new RegExp(
    [
      "(`+)([\\s\\S]*?[^`])\\1(?!`)", // 1,2 code span
      "\\*\\*(?=\\S)([\\s\\S]*?\\S)\\*\\*", // 3 strong
      "(?<![\\w])__(?=\\S)([\\s\\S]*?\\S)__(?![\\w])", // 4 strong (not inside words)
      "~~(?=\\S)([\\s\\S]*?\\S)~~", // 5 strikethrough
      "\\*(?=[^\\s*])([\\s\\S]*?[^\\s*])\\*", // 6 emphasis
      "(?<![\\w])_(?=[^\\s_])([\\s\\S]*?[^\\s_])_(?![\\w])", // 7 emphasis (not inside words)
      "\\[([^\\]\\n]+)\\]\\(\\s*<?([^\\s()<>]+(?:\\([^\\s()]*\\))?)>?(?:\\s+\"[^\"]*\")?\\s*\\)", // 8,9 link
      "(https?:\\/\\/[^\\s<>()\\[\\]]*[^\\s<>()\\[\\].,;:!?'\"])", // 10 bare URL
      "\\\\([\\\\`*_{}\\[\\]()#+\\-.!~|>])", // 11 escape
      "( {2,}|\\\\)\\n|\\n", // 12 line break
    ].join("|"),
    "g",
  );

  function renderInline(text) {
    const out = document.createDocumentFragment();
    const re = new RegExp(INLINE.source, "g");
    let last = 0;
    let m;
    while ((m = re.exec(text)) !== null) {
      if (m.index > last) out.append(document.createTextNode(text.slice(last, m.index)));
      last = re.lastIndex;
      if (m[2] !== undefined) out.append(el("code", { text: m[2].replace(/^ (.*) $/, "$1") }));
      else if (m[3] !== undefined || m[4] !== undefined)
        out.append(el("strong", {}, renderInline(m[3] ?? m[4])));
      else if (m[5] !== undefined) out.append(el("del", {}, renderInline(m[5])));
      else if (m[6] !== undefined || m[7] !== undefined)
        out.append(el("em", {}, renderInline(m[6] ?? m[7])));
      else if (m[8] !== undefined) {
        const href = safeUrl(m[9]);
        out.append(
          href
            ? el("a", { href, target: "_blank", rel: "noopener noreferrer nofollow" }, renderInline(m[8]))
            : document.createTextNode(m[0]),
        );
      } else if (m[10] !== undefined) {
        const href = safeUrl(m[10]);
        out.append(
          href
            ? el("a", { href, target: "_blank", rel: "noopener noreferrer nofollow", text: m[10] })
            : document.createTextNode(m[10]),
        );
      } else if (m[11] !== undefined) out.append(document.createTextNode(m[11]));
      else out.append(el("br"));
    }
    if (last < text.length) out.append(document.createTextNode(text.slice(last)));
    return out;
  }

  const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)[^`]*$/;
  const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
  const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
  const QUOTE = /^ {0,3}> ?(.*)$/;
  const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
  const TABLE_SEP = /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;

  function splitRow(line) {
    let row = line.trim();
    if (row.startsWith("|")) row = row.slice(1);
    if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
    return row.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, "|"));
  }

  function startsBlock(line, next) {
    return (
      FENCE.test(line) ||
      HEADING.test(line) ||
      RULE.test(line) ||
      QUOTE.test(line) ||
      ITEM.test(line) ||
      (line.includes("|") && next !== undefined && TABLE_SEP.test(next) && next.includes("-"))
    );
  }

  function renderList(lines, start) {
    const first = ITEM.exec(lines[start]);
    const indent = first[1].length;
    const ordered = /\d/.test(first[2]);
    const list = el(ordered ? "ol" : "ul");
    if (ordered && parseInt(first[2], 10) !== 1) list.setAttribute("start", parseInt(first[2], 10));
    let i = start;
    let item = null;
    const flush = () => {
      if (!item) return;
      const body = renderBlocks(item.join("\n"));
      const only = body.childNodes.length === 1 && body.firstChild.nodeName === "P";
      list.append(el("li", {}, only ? renderInline(item.join("\n")) : body));
      item = null;
    };
    while (i < lines.length) {
      const line = lines[i];
      const m = ITEM.exec(line);
      if (m && m[1].length <= indent + 1 && /\d/.test(m[2]) === ordered) {
        flush();
        item = [m[3]];
      } else if (m && m[1].length <= indent + 1) {
        break; // the other kind of list starts
      } else if (line.trim() === "") {
        // A blank line continues the list only before an indented line or a sibling item.
        const next = lines[i + 1];
        const sibling = next !== undefined ? ITEM.exec(next) : null;
        const isSibling = sibling && sibling[1].length <= indent + 1 && /\d/.test(sibling[2]) === ordered;
        if (isSibling) {
          /* the loop takes it */
        } else if (next !== undefined && /^\s{2,}\S/.test(next)) item.push("");
        else break;
      } else if (/^\s+\S/.test(line) || !startsBlock(line, lines[i + 1])) {
        item.push(line.replace(new RegExp(`^\\s{0,${indent + 4}}`), ""));
      } else {
        break;
      }
      i += 1;
    }
    flush();
    return [list, i];
  }

  function renderBlocks(src) {
    const out = document.createDocumentFragment();
    const lines = src.replace(/\r\n?/g, "\n").split("\n");
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      let m;
      if (line.trim() === "") {
        i += 1;
      } else if ((m = FENCE.exec(line))) {
        const fence = m[1];
        const body = [];
        i += 1;
        while (i < lines.length && !lines[i].trim().startsWith(fence)) body.push(lines[i++]);
        i += 1; // the closing fence (an unclosed one, mid-stream, runs to the end)
        const code = el("code", { text: body.join("\n") });
        if (m[2]) code.className = `language-${m[2].replace(/[^\w+#-]/g, "")}`;
        out.append(el("pre", {}, code));
      } else if ((m = HEADING.exec(line))) {
        out.append(el(`h${Math.min(6, m[1].length + 2)}`, {}, renderInline(m[2])));
        i += 1;
      } else if (RULE.test(line)) {
        out.append(el("hr"));
        i += 1;
      } else if (QUOTE.test(line)) {
        const body = [];
        while (i < lines.length && (m = QUOTE.exec(lines[i]))) {
          body.push(m[1]);
          i += 1;
        }
        out.append(el("blockquote", {}, renderBlocks(body.join("\n"))));
      } else if (ITEM.test(line)) {
        const [list, next] = renderList(lines, i);
        out.append(list);
        i = next;
      } else if (line.includes("|") && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1]) && lines[i + 1].includes("-")) {
        const head = splitRow(line);
        const aligns = splitRow(lines[i + 1]).map((c) =>
          c.startsWith(":") && c.endsWith(":") ? "center" : c.endsWith(":") ? "right" : null,
        );
        i += 2;
        const rows = [];
        while (i < lines.length && lines[i].includes("|") && lines[i].trim() !== "") rows.push(splitRow(lines[i++]));
        const cell = (tag, text, n) => {
          const node = el(tag, {}, renderInline(text ?? ""));
          if (aligns[n]) node.classList.add(`align-${aligns[n]}`);
          return node;
        };
        out.append(
          el(
            "div",
            { class: "table-wrap" },
            el(
              "table",
              {},
              el("thead", {}, el("tr", {}, ...head.map((h, n) => cell("th", h, n)))),
              el("tbody", {}, ...rows.map((r) => el("tr", {}, ...head.map((_, n) => cell("td", r[n], n))))),
            ),
          ),
        );
      } else {
        const body = [line];
        i += 1;
        while (i < lines.length && lines[i].trim() !== "" && !startsBlock(lines[i], lines[i + 1])) body.push(lines[i++]);
        out.append(el("p", {}, renderInline(body.join("\n"))));
      }
    }
    return out;
  }

  // ---------------------------------------------------------------------------
  // The API
  // ---------------------------------------------------------------------------

  const KEY_STORAGE = "agent-server.api-key";
  const memoryStore = new Map(); // when localStorage is unavailable (private modes)

  const keyStore = {
    get() {
      try {
        return window.localStorage.getItem(KEY_STORAGE) || "";
      } catch {
        return memoryStore.get(KEY_STORAGE) || "";
      }
    },
    set(value) {
      try {
        if (value) window.localStorage.setItem(KEY_STORAGE, value);
        else window.localStorage.removeItem(KEY_STORAGE);
      } catch {
        if (value) memoryStore.set(KEY_STORAGE, value);
        else memoryStore.delete(KEY_STORAGE);
      }
    },
  };

  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  const STATUS_TITLES = {
    401: "API key needed",
    403: "Not allowed",
    404: "Not found",
    409: "This conversation is busy",
    413: "Message too large",
    422: "Invalid request",
    429: "Slow down",
    502: "The model provider failed",
    503: "No model is available",
  };

  /** Titles for the codes of a stream's `error` event (the message follows). */
  const CODE_TITLES = {
    upstream_unavailable: "No model is available",
    upstream_auth: "The model provider rejected the server's credentials",
    upstream_rejected: "Every model rejected the request",
    stream_timeout: "The answer took too long",
    shutting_down: "The server is restarting",
    store_unavailable: "A data store is unreachable",
  };

  function headers(extra) {
    const h = { Accept: "application/json", ...extra };
    const key = keyStore.get();
    if (key) h.Authorization = `Bearer ${key}`;
    return h;
  }

  /** The server's `{"error": {"code", "message"}}`, or a fallback for anything else. */
  async function errorFrom(response) {
    let code = `http_${response.status}`;
    let message = response.statusText || "Request failed";
    try {
      const body = await response.json();
      if (body && body.error) {
        code = body.error.code || code;
        message = body.error.message || message;
      }
    } catch {
      /* not JSON: keep the status line */
    }
    return new ApiError(response.status, code, message, response.headers.get("Retry-After"));
  }

  async function api(method, path, body) {
    const init = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}) };
    if (body) init.body = JSON.stringify(body);
    const response = await fetch(path, init);
    if (!response.ok) throw await errorFrom(response);
    return response.status === 204 ? null : response.json();
  }

  /** Server-sent events from a fetch body: yields `{event, data}` with `data` parsed. */
  async function* sseEvents(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = "message";
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
        if (line === "") {
          if (data.length) {
            const text = data.join("\n");
            let parsed;
            try {
              parsed = JSON.parse(text);
            } catch {
              parsed = { raw: text };
            }
            yield { event, data: parsed };
          }
          event = "message";
          data = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let value2 = colon < 0 ? "" : line.slice(colon + 1);
          if (value2.startsWith(" ")) value2 = value2.slice(1);
          if (field === "event") event = value2;
          else if (field === "data") data.push(value2);
        }
      }
    }
  }

  // ---------------------------------------------------------------------------
  // Rendering a conversation
  // ---------------------------------------------------------------------------

  const messagesEl = $("messages");

  function scrollToEnd(force) {
    const nearEnd = messagesEl.scrollHeight - messagesEl.scrollTop - messagesEl.clientHeight < 160;
    if (force || nearEnd) messagesEl.scrollTop = messagesEl.scrollHeight;
  }

  function userMessage(text) {
    return el(
      "article",
      { class: "msg msg-user" },
      el("div", { class: "bubble", text }), // what the person typed, as typed
    );
  }

  function formatArgs(args) {
    if (!args || typeof args !== "object") return String(args ?? "");
    return Object.entries(args)
      .map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`)
      .join(", ");
  }

  function pretty(value) {
    if (typeof value === "string") {
      try {
        return JSON.stringify(JSON.parse(value), null, 2);
      } catch {
        return value;
      }
    }
    return JSON.stringify(value, null, 2);
  }

  /** A tool result in a few words for the card's summary line. */
  function preview(output) {
    let text = String(output ?? "");
    try {
      const parsed = JSON.parse(text);
      if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) {
        if ("result" in parsed) text = String(parsed.result);
        else if (Array.isArray(parsed.results)) {
          const n = parsed.results.length;
          const titles = parsed.results.map((r) => r && r.title).filter(Boolean);
          text = `${n} result${n === 1 ? "" : "s"}${titles.length ? `: ${titles.join(", ")}` : ""}`;
        } else if (parsed.error) text = String(parsed.error);
      }
    } catch {
      /* plain text */
    }
    text = text.replace(/\s+/g, " ").trim();
    return text.length > 80 ? `${text.slice(0, 79)}…` : text;
  }

  function formatMs(ms) {
    if (ms === undefined || ms === null) return "";
    return ms < 10 ? `${Number(ms).toFixed(1)} ms` : ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
  }

  function chip(text, cls, title) {
    return el("span", { class: `meta-chip ${cls || ""}`.trim(), title: title || null, text });
  }

  /** Chips under an answer: model, degraded, fallbacks, tools, tokens, latency, cost. */
  function metaChips(result) {
    const chips = [];
    if (result.model_used) chips.push(chip(result.model_used, "meta-model", "The model that answered"));
    if (result.degraded)
      chips.push(
        chip("degraded", "badge-degraded", "Every model was unavailable: the built-in offline model answered"),
      );
    const hops = result.fallbacks || [];
    if (hops.length)
      chips.push(
        chip(
          `${hops.length} fallback${hops.length > 1 ? "s" : ""}`,
          "meta-fallback",
          hops.map((f) => `${f.model}: ${f.reason}`).join("\n"),
        ),
      );
    const usage = result.usage || {};
    if (usage.total_tokens) chips.push(chip(`${usage.total_tokens} tokens`, "", `${usage.input_tokens} in · ${usage.output_tokens} out`));
    if (result.latency_ms !== undefined) chips.push(chip(formatMs(result.latency_ms), "", "Turn latency"));
    if (result.cost_usd) chips.push(chip(`$${Number(result.cost_usd).toFixed(5)}`, "", "Cost"));
    return el("footer", { class: "meta" }, ...chips);
  }

  /** One assistant message, built as its events arrive. */
  class AssistantTurn {
    constructor() {
      this.timeline = el("div", { class: "timeline" });
      this.typing = el("div", { class: "typing", "aria-label": "Thinking" }, el("span"), el("span"), el("span"));
      this.root = el(
        "article",
        { class: "msg msg-assistant" },
        el("div", { class: "avatar", "aria-hidden": "true" }),
        el("div", { class: "msg-body" }, this.timeline, this.typing),
      );
      this.segment = null; // the answer text of the current model call
      this.cards = new Map();
      this.model = null;
      this.pending = false;
      this.hops = [];
    }

    busy(on) {
      this.typing.hidden = !on;
    }

    onMetadata(data) {
      this.model = data.model || null;
    }

    onDelta(text) {
      if (!this.segment) {
        const node = el("div", { class: "answer" });
        this.segment = { node, text: "" };
        this.timeline.append(node);
      }
      this.segment.text += text;
      if (!this.pending) {
        // One Markdown render per frame, however fast tokens come.
        this.pending = true;
        requestAnimationFrame(() => {
          this.pending = false;
          this.renderSegment();
          scrollToEnd();
        });
      }
    }

    renderSegment() {
      if (this.segment) this.segment.node.replaceChildren(renderBlocks(this.segment.text));
    }

    endSegment() {
      this.renderSegment();
      this.segment = null;
    }

    note(kind, icon, text) {
      this.timeline.append(el("div", { class: `note note-${kind}` }, el("span", { class: "note-icon", "aria-hidden": "true", text: icon }), el("span", { text })));
    }

    toolCard(name, args, id) {
      const status = el("span", { class: "tool-status", text: "running…" });
      const duration = el("span", { class: "tool-duration" });
      const result = el("span", { class: "tool-preview" });
      const output = el("pre", { class: "tool-output" });
      const card = el(
        "details",
        { class: "tool-card running", "data-tool": name },
        el(
          "summary",
          {},
          el("span", { class: "tool-icon", "aria-hidden": "true" }),
          el("span", { class: "tool-name", text: name }),
          el("code", { class: "tool-args", text: formatArgs(args) }),
          result,
          status,
          duration,
        ),
        el(
          "div",
          { class: "tool-body" },
          el("div", { class: "tool-label", text: "Arguments" }),
          el("pre", { class: "tool-input", text: pretty(args ?? {}) }),
          el("div", { class: "tool-label", text: "Result" }),
          output,
        ),
      );
      const entry = { card, status, duration, result, output };
      if (id) this.cards.set(id, entry);
      return entry;
    }

    onToolStart(data) {
      this.endSegment();
      const entry = this.toolCard(data.name, data.args, data.id);
      this.timeline.append(entry.card);
      scrollToEnd();
    }

    onToolEnd(data) {
      let entry = this.cards.get(data.id);
      if (!entry) {
        entry = this.toolCard(data.name, {}, data.id);
        this.timeline.append(entry.card);
      }
      const ok = data.status !== "error";
      entry.card.classList.remove("running");
      entry.card.classList.add(ok ? "ok" : "failed");
      entry.status.textContent = ok ? "" : "error";
      entry.result.textContent = `→ ${preview(data.output)}`;
      entry.duration.textContent = formatMs(data.duration_ms);
      entry.output.textContent = pretty(data.output);
    }

    /** Consecutive hops share one line: "m1 failed (rate_limit) → m2 failed (…) → m3". */
    onFallback(data) {
      const last = this.timeline.lastElementChild;
      if (!last || !last.classList.contains("note-fallback")) {
        this.note("fallback", "↪", "");
        this.hops = [];
      }
      this.hops.push(data);
      const trail = this.hops.map((h) => `${h.from} failed (${h.reason})`);
      trail.push(data.to || "no model left");
      this.timeline.lastElementChild.lastElementChild.textContent = trail.join(" → ");
    }

    onReset(data) {
      if (this.segment) {
        this.renderSegment();
        this.segment.node.classList.add("discarded");
        this.segment.node.setAttribute("title", "Discarded: the model failed mid-answer");
        this.segment = null;
      }
      this.note("reset", "↻", `${data.model} failed mid-answer (${data.reason}): retrying with the next model`);
    }

    onDone(result) {
      this.endSegment();
      if (!this.timeline.querySelector(".answer") && result.response) {
        this.onDelta(result.response);
        this.endSegment();
      }
      this.root.querySelector(".msg-body").append(metaChips(result));
    }

    onError(title, message) {
      this.endSegment();
      this.timeline.append(
        el("div", { class: "error-box", role: "alert" }, el("strong", { text: title }), el("span", { text: message })),
      );
    }

    onStopped() {
      this.endSegment();
      this.note("stopped", "■", "Stopped. Nothing of this turn was saved.");
    }
  }

  /** A past turn from the history: the same look, without the live events. */
  function pastTurn(turn) {
    const view = new AssistantTurn();
    view.busy(false);
    for (const name of turn.tools_used || []) {
      const entry = view.toolCard(name, null, null);
      entry.card.classList.remove("running");
      entry.card.classList.add("ok", "past");
      entry.status.textContent = "";
      entry.card.querySelector(".tool-args").textContent = "";
      entry.card.querySelector(".tool-body").replaceChildren(
        el("div", { class: "tool-label", text: "Arguments and results of past turns are not kept." }),
      );
      view.timeline.append(entry.card);
    }
    view.onDone({ ...turn, response: turn.response });
    return [userMessage(turn.user_message), view.root];
  }

  // ---------------------------------------------------------------------------
  // The page
  // ---------------------------------------------------------------------------

  const ui = {
    input: $("input"),
    send: $("send"),
    stop: $("stop"),
    title: $("title"),
    status: $("status"),
    welcome: $("welcome"),
    list: $("session-list"),
    empty: $("sessions-empty"),
    keyPanel: $("key-panel"),
    keyInput: $("api-key"),
    keyMessage: $("key-message"),
    sidebar: $("sidebar"),
    scrim: $("scrim"),
    menu: $("menu"),
  };

  const state = {
    sessionId: null,
    controller: null, // the running turn's AbortController
    resendAfterKey: false,
  };

  function setStatus(text) {
    ui.status.textContent = text || "";
  }

  function setStreaming(on) {
    ui.send.hidden = on;
    ui.stop.hidden = !on;
    document.body.classList.toggle("streaming", on);
  }

  function showKeyPanel(message) {
    ui.keyMessage.textContent = message || "This server needs an API key. It is kept in this browser only.";
    if (ui.keyPanel.hidden) {
      // Only when it opens: a second 401 must not overwrite what is being typed.
      ui.keyPanel.hidden = false;
      ui.keyInput.value = keyStore.get();
    }
    ui.keyInput.focus();
  }

  function openSidebar(open) {
    ui.sidebar.classList.toggle("open", open);
    ui.scrim.hidden = !open;
    ui.menu.setAttribute("aria-expanded", String(open));
  }

  function relativeTime(iso) {
    const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
    const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
    const steps = [
      [60, "second"],
      [3600, "minute", 60],
      [86400, "hour", 3600],
      [604800, "day", 86400],
      [Infinity, "week", 604800],
    ];
    for (const [limit, unit, size] of steps) {
      if (Math.abs(seconds) < limit) return rtf.format(Math.round(seconds / (size || 1)), unit);
    }
    return "";
  }

  function clearConversation() {
    messagesEl.replaceChildren(ui.welcome);
    ui.welcome.hidden = false;
  }

  function selectSession(id, title) {
    state.sessionId = id;
    ui.title.textContent = title || (id ? "Untitled" : "New chat");
    document.title = `${ui.title.textContent} · agent-server`;
    const hash = id ? `#session=${encodeURIComponent(id)}` : " ";
    if (window.location.hash !== hash) window.history.replaceState(null, "", hash === " " ? window.location.pathname : hash);
    for (const item of ui.list.querySelectorAll(".session")) {
      item.classList.toggle("active", item.dataset.id === id);
      const button = item.querySelector(".session-open");
      if (item.dataset.id === id) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
  }

  function newSession() {
    if (state.controller) return;
    clearConversation();
    selectSession(null, null);
    setStatus("");
    openSidebar(false);
    ui.input.focus();
  }

  async function loadSessions() {
    let body;
    const usedKey = keyStore.get();
    try {
      body = await api("GET", "/api/chat/sessions?limit=100");
    } catch (err) {
      // A 401 for a key that was replaced meanwhile is stale: the new key asks again.
      if (err.status === 401 && usedKey === keyStore.get()) showKeyPanel(err.message);
      else if (err.status === 401) return;
      else setStatus(`Could not list conversations: ${err.message}`);
      return;
    }
    ui.list.replaceChildren(
      ...body.sessions.map((s) => {
        const remove = el("button", { class: "session-delete", type: "button", "aria-label": `Delete “${s.title || "Untitled"}”`, title: "Delete" }, "×");
        const item = el(
          "li",
          { class: "session", "data-id": s.session_id },
          el(
            "button",
            { class: "session-open", type: "button" },
            el("span", { class: "session-title", text: s.title || "Untitled" }),
            el("span", { class: "session-when", text: `${relativeTime(s.last_active_at)} · ${s.turn_count} turn${s.turn_count === 1 ? "" : "s"}` }),
          ),
          remove,
        );
        item.querySelector(".session-open").addEventListener("click", () => openSession(s.session_id, s.title));
        remove.addEventListener("click", () => confirmDelete(item, remove, s.session_id));
        return item;
      }),
    );
    ui.empty.hidden = body.sessions.length > 0;
    selectSession(state.sessionId, ui.title.textContent === "New chat" ? null : ui.title.textContent);
  }

  /** The model chain in the top bar: which model answers first, and what follows. */
  async function loadModels() {
    const chainEl = $("model-chain");
    try {
      const body = await api("GET", "/api/models");
      const ids = body.models.map((m) => m.id);
      chainEl.textContent = body.offline_only ? "offline model" : ids[0] + (ids.length > 1 ? ` +${ids.length - 1}` : "");
      chainEl.title = body.offline_only
        ? "No API key is configured: the built-in offline model answers"
        : `Fallback chain: ${ids.join(" → ")}`;
      chainEl.hidden = false;
    } catch {
      chainEl.hidden = true;
    }
  }

  /** Two clicks delete: the first arms the button for a few seconds. */
  function confirmDelete(item, button, id) {
    if (!button.classList.contains("armed")) {
      button.classList.add("armed");
      button.textContent = "Delete";
      setTimeout(() => {
        button.classList.remove("armed");
        button.textContent = "×";
      }, 3000);
      return;
    }
    api("DELETE", `/api/chat/session/${encodeURIComponent(id)}`)
      .catch((err) => {
        if (err.status !== 404) throw err;
      })
      .then(() => {
        item.remove();
        ui.empty.hidden = ui.list.children.length > 0;
        if (state.sessionId === id) newSession();
      })
      .catch((err) => setStatus(`Could not delete: ${err.message}`));
  }

  async function openSession(id, title) {
    if (state.controller) return;
    openSidebar(false);
    setStatus("Loading…");
    let body;
    try {
      body = await api("GET", `/api/chat/history/${encodeURIComponent(id)}?limit=500`);
    } catch (err) {
      if (err.status === 401) showKeyPanel(err.message);
      setStatus(err.status === 404 ? "That conversation no longer exists." : err.message);
      if (err.status === 404) {
        selectSession(null, null);
        loadSessions();
      }
      return;
    }
    clearConversation();
    ui.welcome.hidden = body.turns.length > 0;
    for (const turn of body.turns) messagesEl.append(...pastTurn(turn));
    selectSession(id, body.title || title);
    setStatus("");
    scrollToEnd(true);
  }

  function errorTitle(err) {
    const title = STATUS_TITLES[err.status] || `Error ${err.status || ""}`.trim();
    return err.retryAfter ? `${title} (retry in ${err.retryAfter}s)` : title;
  }

  async function send(text) {
    text = text.trim();
    if (!text || state.controller) return;
    ui.welcome.hidden = true;
    const userEl = userMessage(text);
    const turn = new AssistantTurn();
    messagesEl.append(userEl, turn.root);
    ui.input.value = "";
    autosize();
    scrollToEnd(true);

    const controller = new AbortController();
    state.controller = controller;
    setStreaming(true);
    setStatus("Thinking…");
    const body = { message: text };
    if (state.sessionId) body.session_id = state.sessionId;
    let finished = false;
    let retry = false;
    const usedKey = keyStore.get();
    try {
      const response = await fetch("/api/chat/message/stream", {
        method: "POST",
        headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      if (!response.ok) throw await errorFrom(response);
      for await (const { event, data } of sseEvents(response)) {
        switch (event) {
          case "metadata":
            turn.onMetadata(data);
            if (data.session_id && data.session_id !== state.sessionId) selectSession(data.session_id, text.slice(0, 60));
            setStatus(data.model ? `Answering · ${data.model}` : "Answering…");
            break;
          case "message":
            turn.onDelta(data.content || "");
            break;
          case "tool_start":
            turn.onToolStart(data);
            setStatus(`Running ${data.name}…`);
            break;
          case "tool_end":
            turn.onToolEnd(data);
            break;
          case "fallback":
            turn.onFallback(data);
            setStatus(`Trying ${data.to}…`);
            break;
          case "reset":
            turn.onReset(data);
            break;
          case "done":
            finished = true;
            turn.onDone(data);
            break;
          case "error":
            finished = true;
            turn.onError(CODE_TITLES[data.code] || "The turn failed", data.message || data.code);
            break;
          // Approvals (issue 19): an `approval_required` event, a turn paused before a
          // tool runs, gets its approve / edit / deny card here once that API exists.
          default:
            break; // unknown events are ignored, as SSE clients should
        }
      }
      if (!finished) turn.onError("The stream ended early", "The connection closed before the answer was complete.");
      setStatus("");
    } catch (err) {
      if (err.name === "AbortError") {
        turn.onStopped();
        setStatus("Stopped");
      } else if (err instanceof ApiError) {
        if (err.status === 401) {
          // Nothing ran: take the message back, ask for a key, send again once it is saved.
          userEl.remove();
          turn.root.remove();
          ui.welcome.hidden = messagesEl.querySelectorAll(".msg").length > 0;
          ui.input.value = text;
          if (usedKey !== keyStore.get()) retry = true; // a new key came meanwhile
          else {
            state.resendAfterKey = true;
            showKeyPanel(err.message);
          }
          setStatus("");
        } else {
          turn.onError(errorTitle(err), err.message);
          setStatus("");
        }
      } else {
        turn.onError("Connection failed", err.message || String(err));
        setStatus("");
      }
    } finally {
      turn.busy(false);
      state.controller = null;
      setStreaming(false);
      scrollToEnd();
      if (finished) loadSessions();
      if (retry) send(text);
    }
  }

  function autosize() {
    ui.input.style.height = "auto";
    ui.input.style.height = `${Math.min(ui.input.scrollHeight, 240)}px`;
  }

  // --- wiring -----------------------------------------------------------------

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    send(ui.input.value);
  });
  ui.input.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter is a new line; Enter that ends an IME composition
    // (Korean, Japanese, Chinese input) only commits the text.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      send(ui.input.value);
    }
  });
  ui.input.addEventListener("input", autosize);
  ui.stop.addEventListener("click", () => state.controller && state.controller.abort());
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      if (state.controller) state.controller.abort();
      openSidebar(false);
    }
  });
  $("new-session").addEventListener("click", newSession);
  $("examples").addEventListener("click", (event) => {
    const button = event.target.closest("[data-prompt]");
    if (button) send(button.dataset.prompt);
  });
  ui.menu.addEventListener("click", () => openSidebar(!ui.sidebar.classList.contains("open")));
  ui.scrim.addEventListener("click", () => openSidebar(false));
  $("key-toggle").addEventListener("click", () => {
    if (ui.keyPanel.hidden) showKeyPanel();
    else ui.keyPanel.hidden = true;
  });
  ui.keyPanel.addEventListener("submit", (event) => {
    event.preventDefault();
    keyStore.set(ui.keyInput.value.trim());
    ui.keyPanel.hidden = true;
    loadSessions();
    loadModels();
    if (state.resendAfterKey) {
      state.resendAfterKey = false;
      send(ui.input.value);
    } else {
      ui.input.focus();
    }
  });
  $("key-forget").addEventListener("click", () => {
    keyStore.set("");
    ui.keyInput.value = "";
    ui.keyPanel.hidden = true;
  });

  // A link to a conversation (#session=<id>) opens it.
  const linked = new URLSearchParams(window.location.hash.slice(1)).get("session");
  loadSessions();
  loadModels();
  if (linked) openSession(linked, null);
  ui.input.focus();
})();
