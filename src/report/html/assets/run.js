// The run page: sortable subject table and the row browser (filters, search, detail).
(function () {
  const index = readJson('evalr-index');
  if (!index) return;
  const n = index.id.length;
  const CS = index.chunk_size;
  const ROW_HEIGHT = 30;

  const table = byId('subject-table');
  if (table) makeSortable(table);

  // Filters.
  const subjectSelect = byId('filter-subject');
  const order = index.subjects.map((name, k) => [name, k]).sort((a, b) => a[0].localeCompare(b[0]));
  const subjectCounts = new Array(index.subjects.length).fill(0);
  for (let i = 0; i < n; i++) subjectCounts[index.subject[i]]++;
  for (const [name, k] of order) {
    subjectSelect.append(el('option', { value: String(k) }, name + ' (' + num(subjectCounts[k]) + ')'));
  }
  const outcomeCounts = new Array(index.outcomes.length).fill(0);
  for (let i = 0; i < n; i++) outcomeCounts[index.outcome[i]]++;
  const outcomeBoxes = byId('filter-outcomes');
  const outcomeInputs = [];
  index.outcomes.forEach((name, k) => {
    if (!outcomeCounts[k]) return;
    const input = el('input', { type: 'checkbox', value: String(k), 'data-outcome': name });
    input.checked = true;
    outcomeInputs.push(input);
    outcomeBoxes.append(el('label', null, input, pill(name), ' ' + num(outcomeCounts[k])));
  });
  let judgeMetric = null, judgeMin = null, judgeMax = null;
  if (index.metrics.length) {
    judgeMetric = el('select', { id: 'filter-judge-metric' }, el('option', { value: '' }, 'any judge score'),
      index.metrics.map((m, k) => el('option', { value: String(k) }, m)));
    judgeMin = el('input', { type: 'number', id: 'filter-judge-min', min: '1', max: '5', value: '1' });
    judgeMax = el('input', { type: 'number', id: 'filter-judge-max', min: '1', max: '5', value: '5' });
    byId('filter-judge').append(el('label', null, 'judge ', judgeMetric, ' from ', judgeMin, ' to ', judgeMax));
  }
  const search = byId('filter-search');
  const status = byId('row-status');
  const detail = byId('row-detail');

  let selected = -1;
  const list = new VirtualList(byId('row-list'), byId('row-spacer'), ROW_HEIGHT, (i) => {
    const outcome = index.outcomes[index.outcome[i]];
    let right = '';
    if (index.chosen[i] != null || index.correct[i] != null) right = letter(index.chosen[i]) + '/' + letter(index.correct[i]);
    const row = el('div', { class: 'vrow' + (i === selected ? ' selected' : ''), 'data-row': String(i), title: index.id[i] },
      pill(outcome),
      el('span', { class: 'txt' }, el('span', { class: 'id', text: index.id[i] }), index.preview[i]),
      el('span', { class: 'ans', text: right, title: 'chosen / correct' }));
    row.addEventListener('click', () => showRow(i));
    return row;
  });

  // Search reads the row details, which are compressed: they are inflated chunk by chunk the
  // first time a search is typed (never at load), yielding between chunks so the page stays
  // responsive. Only the searchable text is kept, not the inflated chunks.
  let haystack = null;
  let indexing = null;
  function buildHaystack() {
    if (indexing) return indexing;
    indexing = (async () => {
      const texts = new Array(n);
      const chunks = Math.ceil(n / CS);
      for (let k = 0; k < chunks; k++) {
        status.textContent = 'Reading rows for search… ' + Math.round((k / chunks) * 100) + '%';
        const rows = await inflateChunk('rows', k);
        rows.forEach((d, j) => { texts[k * CS + j] = searchText(d).toLowerCase(); });
      }
      haystack = texts;
    })();
    return indexing;
  }
  function searchText(d) {
    const parts = [d.id];
    const r = d.record;
    if (r) {
      const row = r.row || {};
      parts.push(row.question, row.subject, ...(row.choices || []));
      for (const value of Object.values(r.captures || {})) parts.push(valueText(value));
      for (const call of r.calls || []) if (call.text != null) parts.push(call.text);
    }
    for (const j of d.judged || []) for (const value of Object.values((j.record && j.record.captures) || {})) parts.push(valueText(value));
    for (const e of d.errors || []) parts.push(e.error);
    return parts.filter((p) => p != null).join('\n');
  }

  let visible = [];
  function applyFilters() {
    const query = search.value.trim().toLowerCase();
    if (query && !haystack) {
      buildHaystack().then(applyFilters);
      return;
    }
    const subject = subjectSelect.value === '' ? -1 : Number(subjectSelect.value);
    const outcomes = new Set(outcomeInputs.filter((i) => i.checked).map((i) => Number(i.value)));
    const metric = judgeMetric && judgeMetric.value !== '' ? Number(judgeMetric.value) : -1;
    const lo = judgeMin ? Number(judgeMin.value) || 1 : 1;
    const hi = judgeMax ? Number(judgeMax.value) || 5 : 5;
    const out = [];
    for (let i = 0; i < n; i++) {
      if (subject >= 0 && index.subject[i] !== subject) continue;
      if (!outcomes.has(index.outcome[i])) continue;
      if (metric >= 0) {
        const score = index.judge[metric][i];
        if (score == null || score < lo || score > hi) continue;
      }
      if (query && !haystack[i].includes(query)) continue;
      out.push(i);
    }
    visible = out;
    list.setItems(out);
    status.textContent = num(out.length) + ' of ' + num(n) + ' rows';
    status.dataset.shown = String(out.length);
  }

  let searchTimer = null;
  search.addEventListener('input', () => {
    // Until the debounced filter runs, the count shown is the old query's: drop it so
    // nothing (a reader script, a test) takes it for the new one.
    delete status.dataset.shown;
    clearTimeout(searchTimer);
    searchTimer = setTimeout(applyFilters, 180);
  });
  subjectSelect.addEventListener('change', applyFilters);
  for (const input of outcomeInputs) input.addEventListener('change', applyFilters);
  for (const input of [judgeMetric, judgeMin, judgeMax]) if (input) input.addEventListener('change', applyFilters);

  let shown = 0;
  async function showRow(i) {
    selected = i;
    list.draw();
    const ticket = ++shown;
    const k = Math.floor(i / CS);
    const [rows, messages] = await Promise.all([loadChunk('rows', k), index.messages ? loadChunk('msgs', k) : null]);
    if (ticket !== shown) return;
    const d = rows[i - k * CS];
    const m = messages ? messages[i - k * CS] : null;
    detail.replaceChildren(renderRecord(d, m, index.outcomes[index.outcome[i]]));
    detail.dataset.row = index.id[i];
    detail.scrollTop = 0;
  }

  // A subject in the table shows its rows.
  if (table) {
    for (const tr of table.tBodies[0].rows) {
      tr.addEventListener('click', () => {
        const k = index.subjects.indexOf(tr.dataset.subject);
        if (k < 0) return;
        subjectSelect.value = String(k);
        applyFilters();
        byId('rows').scrollIntoView();
      });
    }
  }

  applyFilters();
  // Open the first row so the browser shows what a row holds.
  if (visible.length) showRow(visible[0]);
})();
