/* printpipe's page of several printers, served at / on the main port when the service drives
   more than one: each printer's state, file, progress and temperatures from GET /api/printers
   (polled), and a link that opens its own page under /printers/NAME/. The key is the same
   one the printer pages keep in this browser; it travels in the X-Api-Key header only. */
'use strict';
(() => {
  const STORE = 'printpipe.apikey';
  const POLL = 2000;           // ms between reads of the list
  const OFFLINE = new Set(['Offline', 'Error', 'Offline after error']);
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  let key = '';
  let timer = 0;

  function storedKey() {
    try { return localStorage.getItem(STORE) || ''; } catch (e) { return ''; }
  }
  function storeKey(value) {
    try { localStorage.setItem(STORE, value); } catch (e) { /* private mode: this tab only */ }
  }
  function keyFromFragment() {
    const found = /(?:^#|[#&])apikey=([^&]*)/.exec(location.hash);
    if (!found) return;
    key = decodeURIComponent(found[1]);
    storeKey(key);
    history.replaceState(null, '', location.pathname + location.search);
  }

  function pill(text, kind) {
    $('link-state').textContent = text;
    $('link-state').className = 'pill' + (kind ? ' ' + kind : '');
  }

  function degrees(value) {
    return typeof value === 'number' ? value.toFixed(1) + '°' : '–';
  }

  function card(row) {
    const section = el('section', 'card printer');
    section.dataset.printer = row.name;
    const title = el('h2');
    const link = el('a', '', row.name);
    link.href = 'printers/' + encodeURIComponent(row.name) + '/';
    title.append(link);
    const kind = OFFLINE.has(row.state) || row.error ? 'bad' : row.printing ? 'busy' : 'ok';
    const state = el('span', 'pill ' + kind, row.state);
    state.dataset.role = 'state';
    const facts = el('dl', 'job');
    const fact = (term, value, role) => {
      const dd = el('dd', '', value);
      dd.dataset.role = role;
      facts.append(el('dt', '', term), dd);
      return dd;
    };
    fact('File', row.file || 'none selected', 'file');
    const bar = el('progress');
    bar.max = 100;
    bar.value = row.progress || 0;
    const progress = fact('Progress', '', 'progress');
    progress.append(bar, ' ' + (row.progress === null ? '–' : row.progress.toFixed(1) + ' %'));
    const heaters = Object.keys(row.temperatures).sort().map((name) => {
      const t = row.temperatures[name];
      return name + ' ' + degrees(t.actual) + ' / ' + degrees(t.target);
    });
    fact('Heaters', heaters.join(' · ') || '–', 'temperatures');
    if (row.error) fact('Why', row.error, 'error');
    section.append(title, state, facts);
    return section;
  }

  async function refresh() {
    clearTimeout(timer);
    let response;
    try {
      response = await fetch('api/printers', {headers: key ? {'X-Api-Key': key} : {},
        cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer'});
    } catch (e) {
      pill('printpipe does not answer', 'bad');
      timer = setTimeout(refresh, POLL);
      return;
    }
    if (response.status === 401 || response.status === 403) {
      pill('Key needed', 'warn');
      $('printers').hidden = true;
      $('key-form').hidden = false;
      return;
    }
    const data = response.ok ? await response.json() : null;
    if (!data) {
      pill(response.status + ' ' + response.statusText, 'bad');
    } else {
      pill(data.printers.length + ' printers', 'ok');
      $('key-form').hidden = true;
      $('printers').replaceChildren(...data.printers.map(card));
      $('printers').hidden = false;
    }
    timer = setTimeout(refresh, POLL);
  }

  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    key = $('key-input').value.trim();
    $('key-input').value = '';
    storeKey(key);
    refresh();
  });
  key = storedKey();
  keyFromFragment();
  refresh();
})();
