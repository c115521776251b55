// mod_websocket demo: one WebSocket per panel (see the comment at the top of
// index.html for the data-* attributes a test reads).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
  const MAX_LOG = 200;

  // A panel: the WebSocket of one location, its connection line, its log
  // and its Close/Reconnect buttons.  opts: protocols (offered
  // subprotocols), onmessage(data, panel), onopen(panel).  panel.send(data,
  // text) sends and logs text as outgoing (not when text is null); false
  // when the socket is not open.  panel.log(class, text) returns the <li>.
  function panel(name, path, opts) {
    const section = $(name), stateEl = $(name + "-state"), logEl = $(name + "-log");
    const url = wsBase + path;
    const p = { ws: null };

    function setState(state, text) {
      section.dataset.state = state;
      stateEl.textContent = text || state;
    }
    p.log = (cls, text) => {
      if (!logEl) return null;
      const li = document.createElement("li");
      li.className = cls;
      li.textContent = text;
      logEl.appendChild(li);
      while (logEl.children.length > MAX_LOG) logEl.removeChild(logEl.firstChild);
      logEl.scrollTop = logEl.scrollHeight;
      return li;
    };
    p.send = (data, text) => {
      if (!p.ws || p.ws.readyState !== WebSocket.OPEN) {
        p.log("note", "not open: nothing sent");
        return false;
      }
      p.ws.send(data);
      if (text !== null) p.log("out", text);
      return true;
    };
    p.connect = () => {
      if (p.ws) {   // forget the old socket: its events no longer count
        p.ws.onopen = p.ws.onmessage = p.ws.onclose = p.ws.onerror = null;
        if (p.ws.readyState < WebSocket.CLOSING) p.ws.close(1000, "reconnect");
      }
      delete section.dataset.closeCode;
      delete section.dataset.closeReason;
      section.dataset.url = url;
      section.dataset.protocol = "";
      $(name + "-url").textContent = url;
      $(name + "-protocol").textContent = "none";
      setState("connecting");
      let ws;
      try {
        ws = new WebSocket(url, opts.protocols || []);
      } catch (e) {
        setState("closed", "closed: " + e.message);
        return;
      }
      ws.binaryType = "arraybuffer";
      p.ws = ws;
      ws.onopen = () => {
        section.dataset.protocol = ws.protocol;
        $(name + "-protocol").textContent = ws.protocol || "none";
        setState("open");
        if (opts.onopen) opts.onopen(p);
      };
      ws.onmessage = (ev) => opts.onmessage(ev.data, p);
      ws.onclose = (ev) => {
        section.dataset.closeCode = ev.code;
        section.dataset.closeReason = ev.reason;
        setState("closed", "closed " + ev.code + (ev.reason ? " " + ev.reason : "") +
                 (ev.wasClean ? "" : " (not clean)"));
      };
    };
    $(name + "-close").onclick = () => { if (p.ws) p.ws.close(1000, "bye"); };
    $(name + "-reconnect").onclick = p.connect;
    p.connect();
    return p;
  }

  // Submitting form NAME-form calls fn(input value); with clear, the input
  // is emptied when fn returns true.
  function onSubmit(name, fn, clear) {
    $(name + "-form").onsubmit = (ev) => {
      ev.preventDefault();
      const input = $(name + "-input");
      if (fn(input.value) && clear) input.value = "";
    };
  }

  const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");

  // --- echo: text and binary come back as sent
  const echo = panel("echo", "/echo", {
    onmessage: (data, p) => {
      if (typeof data === "string") p.log("in", data);
      else p.log("in", "binary " + data.byteLength + " bytes: " + hex(new Uint8Array(data)));
    },
  });
  onSubmit("echo", (text) => echo.send(text, text));
  $("echo-binary").onclick = () => {
    const bytes = Uint8Array.from({ length: 16 }, (_, i) => i * 17);
    echo.send(bytes.buffer, "binary 16 bytes: " + hex(bytes));
  };

  // --- chat: "name: text" to everyone; "* <address> joined/left" notices
  $("chat-name").value = "guest" + Math.floor(100 + Math.random() * 900);
  const chat = panel("chat", "/chat", {
    onmessage: (data, p) => {
      if (typeof data !== "string") p.log("note", "binary message of " + data.byteLength + " bytes");
      else p.log(data.startsWith("* ") ? "note" : "in", data);
    },
  });
  onSubmit("chat", (text) => {
    const line = ($("chat-name").value.trim() || "anonymous") + ": " + text;
    // not logged now: the server sends it back to us with everyone else's
    return text !== "" && chat.send(line, null);
  }, true);

  // --- counter: the dumb-increment-protocol
  const increment = panel("increment", "/increment", {
    protocols: ["dumb-increment-protocol"],
    onmessage: (data) => { $("increment-value").textContent = data; },
  });
  $("increment-reset").onclick = () => increment.send("reset\n", "reset");

  // --- proxy: text as UTF-8 bytes through the TCP echo; bytes come back
  // in whatever pieces TCP made of them (each log line's data-bytes says
  // how many)
  let decoder;
  const proxy = panel("proxy", "/proxy", {
    protocols: ["binary"],
    onopen: () => { decoder = new TextDecoder(); },
    onmessage: (data, p) => {
      const bytes = typeof data === "string" ? new TextEncoder().encode(data) : new Uint8Array(data);
      p.log("in", decoder.decode(bytes, { stream: true })).dataset.bytes = bytes.length;
    },
  });
  onSubmit("proxy", (text) => {
    const bytes = new TextEncoder().encode(text);
    if (!proxy.send(bytes.buffer, null)) return false;
    proxy.log("out", text).dataset.bytes = bytes.length;
    return true;
  });

  // --- exec: a line calculator, one process per WebSocket (the exec
  // plugin); every line it writes is a message
  const exec = panel("exec", "/exec", {
    onmessage: (data, p) => p.log("in", data),
  });
  onSubmit("exec", (text) => text.trim() !== "" && exec.send(text, text), true);

  window.demo = { echo, chat, increment, proxy, exec };   // for the console
})();
