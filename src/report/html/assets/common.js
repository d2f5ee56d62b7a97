'use strict';
// Shared by the run and compare pages. Every value that comes from data reaches the page as
// text (textContent, Text nodes, setAttribute on data-* and title), never as markup, so a row
// holding "<script>" shows those characters and runs nothing.

const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const letter = (i) => (i == null || i < 0 ? '–' : i < 26 ? LETTERS[i] : String(i + 1));
const byId = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value == null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = value;
      else node.setAttribute(key, value);
    }
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function readJson(id) {
  const node = byId(id);
  return node ? JSON.parse(node.textContent) : null;
}

// Row chunks are gzip + base64 inside <script type="application/x-evalr-chunk"> elements; the
// browser's own DecompressionStream inflates one only when a row in it is needed.
async function inflateChunk(kind, k) {
  const node = byId('evalr-' + kind + '-' + k);
  if (!node) return null;
  const raw = atob(node.textContent.trim());
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  return JSON.parse(await new Response(stream).text());
}

// The chunks of the rows last opened stay inflated, a few of them: an inflated chunk takes
// about 7 times its size in the page, so keeping every chunk a reader ever touched would grow
// the heap with the run (a full MMLU run's rows: ~180 MB).
const CHUNKS_KEPT = 8;
const chunkCache = new Map();
function loadChunk(kind, k) {
  const key = kind + ':' + k;
  let chunk = chunkCache.get(key);
  if (chunk) {
    chunkCache.delete(key);
  } else {
    chunk = inflateChunk(kind, k);
  }
  chunkCache.set(key, chunk);
  while (chunkCache.size > CHUNKS_KEPT) chunkCache.delete(chunkCache.keys().next().value);
  return chunk;
}

const pct = (x) => (x == null ? '–' : (x * 100).toFixed(1) + '%');
const ms = (x) => (x == null ? '–' : Math.round(x).toLocaleString('en-US') + ' ms');
const num = (x) => (x == null ? '–' : Number(x).toLocaleString('en-US'));

// Only the rows near the viewport exist in the DOM: 14,000 rows scroll like 40.
class VirtualList {
  constructor(container, spacer, rowHeight, render) {
    this.container = container;
    this.spacer = spacer;
    this.rowHeight = rowHeight;
    this.render = render;
    this.items = [];
    this.pending = false;
    container.addEventListener('scroll', () => {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; this.draw(); });
    });
  }
  setItems(items) {
    this.items = items;
    this.spacer.style.height = items.length * this.rowHeight + 'px';
    this.container.scrollTop = 0;
    this.draw();
  }
  draw() {
    const top = this.container.scrollTop;
    const height = this.container.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / this.rowHeight) - 8);
    const last = Math.min(this.items.length, Math.ceil((top + height) / this.rowHeight) + 8);
    const nodes = [];
    for (let i = first; i < last; i++) {
      const node = this.render(this.items[i], i);
      node.style.top = i * this.rowHeight + 'px';
      nodes.push(node);
    }
    this.spacer.replaceChildren(...nodes);
  }
}

function pill(outcome) {
  return el('span', { class: 'pill ' + outcome, text: outcome });
}

function kvList(entries) {
  const dl = el('dl', { class: 'kv' });
  for (const [key, value] of entries) {
    if (value == null) continue;
    dl.append(el('dt', { text: key }), el('dd', null, value instanceof Node ? value : String(value)));
  }
  return dl;
}

function valueText(value) {
  return typeof value === 'string' ? value : JSON.stringify(value, null, 1);
}

function messageBlock(message) {
  const role = String(message.role || '');
  return el('div', { class: 'msg ' + role.replace(/[^a-z]/g, ''), 'data-role': role },
    el('div', { class: 'role', text: role }), el('pre', { text: message.content }));
}

// One call of a row: what was sent, what came back, how long it took.
function renderCall(call, index, messages, choices) {
  const usage = call.usage || {};
  const head = el('div', { class: 'head' },
    el('b', { text: '#' + (index + 1) + ' ' + (call.kind || 'call') + ' ' + (call.capture || '') }),
    call.path ? el('span', null, 'path ', el('code', { text: call.path })) : null,
    call.chosen != null && call.options ? el('span', null, 'chose ', el('code', { text: String(call.options[call.chosen]) })) : null,
    el('span', { text: 'latency ' + ms(call.latency_ms) }),
    el('span', { text: 'tokens ' + num(usage.prompt_tokens) + ' in / ' + num(usage.completion_tokens) + ' out' }),
    el('span', { text: 'attempts ' + call.attempts }),
    call.rate_limited ? el('span', { class: 'warn', text: '429s ' + call.rate_limited }) : null,
    call.cached ? el('span', { class: 'muted', text: 'from cache' }) : null);
  const body = el('div', { class: 'body' });
  if (messages && messages.length) {
    for (const message of messages) body.append(messageBlock(message));
  } else {
    body.append(el('p', { class: 'note', text: 'The messages of this call were not recorded (results written before evalr recorded them).' }));
  }
  if (call.options && call.option_probs && call.option_probs.length === call.options.length) {
    const rows = call.options.map((option, k) => el('tr', null,
      el('td', null, el('code', { text: option })),
      el('td', { class: 'num', text: (call.option_probs[k] * 100).toFixed(2) + '%' })));
    body.append(el('table', null, el('thead', null, el('tr', null, el('th', { text: 'option' }), el('th', { class: 'num', text: 'probability' }))), el('tbody', null, rows)));
  }
  if (call.text != null) {
    body.append(el('div', { class: 'msg assistant output' }, el('div', { class: 'role', text: 'model output' }), el('pre', { text: call.text })));
  }
  return el('div', { class: 'call' }, head, body);
}

// A row as the run recorded it: question, choices with probabilities, captures, every call.
function renderRecord(detail, messages, outcome) {
  const out = el('div', { class: 'record' });
  const record = detail.record;
  const errors = detail.errors || [];
  if (!record) {
    out.append(el('h3', null, pill('failed'), ' ', el('span', { class: 'mono', text: detail.id })));
    out.append(el('p', { class: 'note', text: 'This row failed for good: it is in errors.jsonl, not in outputs.jsonl, and is not counted in accuracy.' }));
  } else {
    const row = record.row || {};
    out.append(el('h3', null, pill(outcome), ' ', el('span', { class: 'mono', text: record.id }),
      row.subject ? el('span', { class: 'muted', text: '  ' + row.subject }) : null));
    out.append(el('div', { class: 'question', text: row.question }));
    const answer = record.answer || {};
    let probs = null;
    for (let i = (record.calls || []).length - 1; i >= 0; i--) {
      const call = record.calls[i];
      if (answer.capture && call.capture === answer.capture) { probs = call.option_probs; break; }
    }
    const choices = row.choices || [];
    if (choices.length) {
      const list = el('ol', { class: 'choices' });
      choices.forEach((choice, k) => {
        const classes = [k === row.correct_answer ? 'correct' : '', k === answer.index ? 'chosen' : ''].join(' ').trim();
        const p = probs && probs.length === choices.length ? probs[k] : null;
        list.append(el('li', { class: classes || null, title: k === row.correct_answer ? 'correct answer' : (k === answer.index ? 'chosen' : null) },
          el('span', { class: 'letter', text: letter(k) }),
          el('span', { text: choice }),
          p == null ? el('span') : el('span', { class: 'prob' },
            el('span', { class: 'fill', style: 'width:' + Math.max(1, Math.round(p * 100)) + '%' }),
            el('span', { text: (p * 100).toFixed(1) + '%' }))));
      });
      out.append(list);
    }
    const selectPath = (record.calls || []).filter((c) => c.capture === answer.capture).map((c) => c.path).filter(Boolean).pop();
    out.append(kvList([
      ['answer', answer.option != null ? answer.option + ' (choice ' + letter(answer.index) + ')' : 'none'],
      ['correct', row.correct_answer != null ? letter(row.correct_answer) : 'not given'],
      ['select path', selectPath || null],
      ['program', record.program || null],
      ['model', record.model || null],
      ['latency', ms(record.latency_ms)],
      ['tokens', record.usage ? num(record.usage.prompt_tokens) + ' prompt, ' + num(record.usage.completion_tokens) + ' completion' : null],
      ['attempts', record.attempts],
      ['HTTP 429s', record.rate_limited || null],
      ['finished', record.finished_at || null],
    ]));
    const extra = Object.entries(row).filter(([key]) => !['id', 'dataset', 'subject', 'question', 'choices', 'correct_answer'].includes(key));
    if (extra.length) {
      out.append(el('h3', { text: 'Other fields of the row' }));
      out.append(kvList(extra.map(([key, value]) => [key, el('pre', { class: 'text', text: valueText(value) })])));
    }
    const captures = Object.entries(record.captures || {});
    if (captures.length) {
      out.append(el('h3', { text: 'Captures' }));
      out.append(kvList(captures.map(([key, value]) => [key, el('pre', { class: 'text', text: valueText(value) })])));
    }
    const calls = record.calls || [];
    if (calls.length) {
      out.append(el('h3', { text: calls.length === 1 ? 'The call' : 'The ' + calls.length + ' calls, in order' }));
      calls.forEach((call, k) => out.append(renderCall(call, k, messages ? messages[k] : null, choices)));
    }
  }
  for (const judged of detail.judged || []) {
    out.append(el('h3', { text: 'Judge: ' + judged.metric + (judged.score != null ? ' = ' + judged.score : ' (no usable score)') }));
    const captures = Object.entries((judged.record && judged.record.captures) || {});
    out.append(kvList(captures.map(([key, value]) => [key, el('pre', { class: 'text', text: valueText(value) })])));
  }
  for (const error of errors) {
    out.append(el('div', { class: 'error-box', text: (error.kind || 'error') + (error.attempts ? ' after ' + error.attempts + ' attempts' : '') + ': ' + error.error }));
  }
  return out;
}

// Click-to-sort on tables with class "sortable": each cell carries its key in data-key.
function makeSortable(table) {
  const headers = Array.from(table.querySelectorAll('th[data-sort]'));
  headers.forEach((th, column) => {
    th.addEventListener('click', () => {
      const numeric = th.dataset.sort === 'num';
      // A first click sorts numbers largest first and names A to Z; the next one reverses.
      const current = th.getAttribute('aria-sort');
      const descending = current ? current !== 'descending' : numeric;
      headers.forEach((h) => h.removeAttribute('aria-sort'));
      th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
      const index = Array.from(th.parentNode.children).indexOf(th);
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      const key = (row) => {
        const text = row.cells[index].dataset.key;
        return numeric ? parseFloat(text) : text;
      };
      rows.sort((a, b) => {
        const x = key(a), y = key(b);
        const order = numeric ? x - y : String(x).localeCompare(String(y));
        return descending ? -order : order;
      });
      body.append(...rows);
    });
  });
}
