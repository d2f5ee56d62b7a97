// The compare page: sortable subject tables and, per pair of runs, the flipped rows side by side.
(function () {
  for (const table of document.querySelectorAll('table.sortable')) makeSortable(table);
  const comparison = readJson('evalr-comparison');
  if (!comparison) return;
  const baseline = comparison.baseline.name;

  document.querySelectorAll('section.pair').forEach((section) => {
    const p = Number(section.dataset.pair);
    const index = readJson('evalr-flipped-' + p);
    if (!index) return;
    const candidate = comparison.pairs[p].candidate.name;
    const n = index.id.length;
    const CS = index.chunk_size;
    const q = (cls) => section.querySelector('.' + cls);
    const direction = q('flip-direction');
    const subject = q('flip-subject');
    const search = q('flip-search');
    const status = q('flip-status');
    const detail = q('flip-detail');
    index.subjects.map((name, k) => [name, k]).sort((a, b) => a[0].localeCompare(b[0]))
      .forEach(([name, k]) => subject.append(el('option', { value: String(k) }, name)));
    const texts = index.id.map((id, i) => (id + '\n' + index.preview[i]).toLowerCase());

    let selected = -1;
    const list = new VirtualList(q('flip-list'), section.querySelector('.flip-list .spacer'), 30, (i) => {
      const toB = index.direction[i] === 1;
      const row = el('div', { class: 'vrow' + (i === selected ? ' selected' : ''), 'data-row': String(i) },
        el('span', { class: 'pill ' + (toB ? 'correct' : 'wrong'), text: toB ? 'B right' : 'A right' }),
        el('span', { class: 'txt' }, el('span', { class: 'id', text: index.id[i] }), index.preview[i]),
        el('span', { class: 'ans', text: letter(index.chosen_a[i]) + '→' + letter(index.chosen_b[i]), title: 'A’s answer → B’s answer (correct ' + letter(index.correct[i]) + ')' }));
      row.addEventListener('click', () => show(i));
      return row;
    });

    let visible = [];
    function apply() {
      const d = direction.value === '' ? -1 : Number(direction.value);
      const s = subject.value === '' ? -1 : Number(subject.value);
      const query = search.value.trim().toLowerCase();
      visible = [];
      for (let i = 0; i < n; i++) {
        if (d >= 0 && index.direction[i] !== d) continue;
        if (s >= 0 && index.subject[i] !== s) continue;
        if (query && !texts[i].includes(query)) continue;
        visible.push(i);
      }
      list.setItems(visible);
      status.textContent = num(visible.length) + ' of ' + num(n) + ' flipped rows';
      status.dataset.shown = String(visible.length);
    }
    direction.addEventListener('change', apply);
    subject.addEventListener('change', apply);
    let timer = null;
    search.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(apply, 150); });

    let ticket = 0;
    async function show(i) {
      selected = i;
      list.draw();
      const mine = ++ticket;
      const k = Math.floor(i / CS);
      const rows = await loadChunk('flip' + p, k);
      if (mine !== ticket) return;
      const d = rows[i - k * CS];
      const side = (label, s) => el('div', null,
        el('h3', { text: label }),
        s ? renderRecord({ id: d.id, record: s.record }, s.messages, s.outcome) : el('p', { class: 'note', text: 'not in this run' }));
      detail.replaceChildren(el('div', { class: 'side' }, side('A: ' + baseline, d.a), side('B: ' + candidate, d.b)));
      detail.dataset.row = d.id;
    }
    apply();
    if (visible.length) show(visible[0]);
  });
})();
