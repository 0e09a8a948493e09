/* printpipe status page. Plain script, no dependencies, public API only (API.md):
   /api/job, /api/printer, /api/files, /api/connection, /api/printer/{tool,bed,command},
   /api/settings (the webcam), /api/timelapse and its downloads, and the event stream /api/events. The key travels in the X-Api-Key header; only the event stream
   carries it in its URL, as EventSource cannot send headers. Every path is relative to the
   page, so the page of one printer of several works under its prefix (/printers/NAME/). */
'use strict';
(() => {
  const STORE = 'printpipe.apikey';
  const WINDOW = 600;          // seconds of temperature history shown
  const HEATER_LIMIT = 1000;   // the API's own bound on targets
  // every catalogue event (pipeline/events/names.py; a test keeps this list equal to it)
  const EVENTS = ('Startup Shutdown ClientOpened ClientAuthed ClientClosed SettingsUpdated ' +
    'Connecting Connected Disconnecting Disconnected Error PrinterStateChanged FirmwareData ' +
    'PrinterReset CaptureStart CaptureDone CaptureFailed PostRollStart PostRollEnd ' +
    'MovieRendering MovieDone MovieFailed Upload FileAdded FileRemoved FileMoved FolderAdded FolderRemoved FolderMoved ' +
    'UpdatedFiles MetadataAnalysisStarted MetadataAnalysisFinished FileSelected FileDeselected ' +
    'TransferStarted TransferDone TransferFailed ' +
    'PrintStarted PrintDone PrintFailed PrintCancelling PrintCancelled PrintPaused PrintResumed ' +
    'PrintInterrupted PowerOn PowerOff Home ZChange Dwelling Waiting Cooling Alert Conveyor Eject EStop ' +
    'FilamentChange ToolChange PositionUpdate CommandSuppressed InvalidToolReported').split(' ');
  const FILE_EVENTS = new Set(['Upload', 'FileAdded', 'FileRemoved', 'FileMoved', 'FolderAdded',
    'FolderRemoved', 'FolderMoved', 'UpdatedFiles', 'MetadataAnalysisFinished']);
  const QUIET = new Set(['ClientOpened', 'ClientAuthed', 'ClientClosed', 'PositionUpdate']);
  const OFFLINE = new Set(['Offline', 'Error', 'Offline after error']);
  const PRINTING = new Set(['Printing', 'Starting', 'Finishing', 'Resuming']);

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  let key = '';
  let stream = null;
  let retry = 500;             // ms before the event stream is tried again (grows)
  let streamDown = false;      // the stream failed and is not open again yet
  let pollTimer = 0;
  let running = false;
  let state = 'Unknown';
  let job = null;
  let heaterNames = '';
  const samples = [];          // {t, temps: {name: [actual, target]}}
  const pending = {files: false, status: false};

  // ---- the key --------------------------------------------------------------------------
  function storedKey() {
    try { return localStorage.getItem(STORE) || ''; } catch (e) { return ''; }
  }
  function storeKey(value) {
    try { if (value) localStorage.setItem(STORE, value); else localStorage.removeItem(STORE); }
    catch (e) { /* private mode: the key lasts as long as the page */ }
  }
  function keyFromFragment() {
    const found = /(?:^#|[#&])apikey=([^&]*)/.exec(location.hash);
    if (!found) return;
    try { key = decodeURIComponent(found[1]); } catch (e) { key = found[1]; }
    storeKey(key);
    history.replaceState(null, '', location.pathname + location.search);
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  // ---- the API ----------------------------------------------------------------------------
  async function api(method, path, body) {
    const headers = {'X-Requested-With': 'printpipe-page'};
    if (key) headers['X-Api-Key'] = key;
    let payload;
    if (body instanceof FormData) payload = body;
    else if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, {method, headers, body: payload, cache: 'no-store',
        credentials: 'omit', referrerPolicy: 'no-referrer'});
    } catch (e) {
      throw new ApiError(0, 'printpipe does not answer (' + e.message + ')');
    }
    const text = response.status === 204 ? '' : await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (!response.ok) {
      const message = data && typeof data.error === 'string' ? data.error
        : (response.status + ' ' + response.statusText).trim();
      const error = new ApiError(response.status, message);
      if (isKeyError(error)) keyRefused(error);
      throw error;
    }
    return data;
  }

  const isKeyError = (e) => e.status === 401 || (e.status === 403 && /API key/.test(e.message));

  let statusAlert = false;     // the alert shows a failed status read (cleared by the next)
  function showError(what, error, fromStatus) {
    statusAlert = !!fromStatus;
    $('alert-text').textContent = what + ': ' + (error && error.message ? error.message : error);
    $('alert').hidden = false;
  }
  function clearError() { $('alert').hidden = true; }

  // run an action from a control: its error is shown as the API wrote it
  async function act(what, fn) {
    try {
      const result = await fn();
      clearError();
      refreshSoon('status');
      return result;
    } catch (e) {
      if (!isKeyError(e)) showError(what, e);
      return undefined;
    }
  }

  function keyRefused(error) {
    stop();
    $('main').hidden = true;
    $('change-key').hidden = true;
    $('key-message').textContent = error.status === 401
      ? 'This printer needs its API key: printpipe serve shows it on the console at first ' +
        'start. The page keeps it in this browser.'
      : 'The printer refused this API key: ' + error.message + '. Enter the key printpipe ' +
        'serve showed, or ask for the link with the key in it.';
    $('key-message').className = error.status === 401 ? '' : 'bad';
    $('key-form').hidden = false;
    setPill('link-state', 'Not connected', 'bad');
    setPill('printer-state', 'Key needed', 'warn');
    $('key-input').focus();
  }

  // ---- start and stop ---------------------------------------------------------------------
  async function start() {
    try {
      await api('GET', 'api/job');
    } catch (e) {
      if (!isKeyError(e)) {
        showError('Reaching printpipe', e);
        setTimeout(start, 3000);
      }
      return;
    }
    running = true;
    $('key-form').hidden = true;
    $('main').hidden = false;
    $('change-key').hidden = !key;
    openStream();
    refreshFiles();
    refreshCamera();
    poll();
  }

  function stop() {
    running = false;
    if (stream) stream.close();
    stream = null;
    clearTimeout(pollTimer);
    clearTimeout(camTimer);
  }

  // ---- the event stream -------------------------------------------------------------------
  function openStream() {
    if (stream) stream.close();
    const source = new EventSource('api/events' +
      (key ? '?apikey=' + encodeURIComponent(key) : ''));
    stream = source;
    source.onopen = () => {
      retry = 500;
      streamDown = false;
      setPill('link-state', 'Live', 'ok');
      refreshSoon('files');
      refreshSoon('status');
    };
    source.onerror = () => {   // reconnect on our own schedule, whatever the browser does
      if (stream !== source) return;
      source.close();
      streamDown = true;
      setPill('link-state', 'Reconnecting…', 'warn');
      setTimeout(() => { if (running && stream === source) reconnect(source); }, retry);
      retry = Math.min(retry * 1.5, 5000);
    };
    for (const name of EVENTS) source.addEventListener(name, onEvent);
    source.addEventListener('StreamOverflow', () => openStream());
  }

  // a refused key shows the key form (api() does that); anything else: try the stream again
  function reconnect(source) {
    api('GET', 'api/version').then(() => {
      if (running && stream === source) openStream();
    }, (e) => {
      if (running && stream === source && !isKeyError(e)) openStream();
    });
  }

  function onEvent(event) {
    let payload = null;
    try { payload = JSON.parse(event.data); } catch (e) { payload = event.data; }
    logEvent(event.type, payload);
    if (FILE_EVENTS.has(event.type)) refreshSoon('files');
    if (event.type === 'MovieDone') refreshTimelapses();
    refreshSoon('status');
  }

  function logEvent(name, payload) {
    if (QUIET.has(name)) return;
    const item = el('li', /Error|Failed|Suppressed|EStop/.test(name) ? 'error' : '');
    const time = el('time', '', new Date().toTimeString().slice(0, 8));
    item.append(time, el('b', '', name));
    const detail = summary(payload);
    if (detail) item.append(detail);
    const log = $('log');
    log.prepend(item);
    while (log.children.length > 200) log.lastChild.remove();
  }

  function summary(payload) {
    if (payload === null || typeof payload !== 'object') return payload ? String(payload) : '';
    const parts = [];
    for (const [k, v] of Object.entries(payload)) {
      if (v === null || v === undefined || k === 'owner' || k === 'origin') continue;
      const text = typeof v === 'object' ? JSON.stringify(v) : String(v);
      parts.push(k + '=' + (text.length > 80 ? text.slice(0, 77) + '…' : text));
    }
    return parts.join(' ');
  }

  // ---- refreshing -------------------------------------------------------------------------
  function refreshSoon(what) {
    if (pending[what] || !running) return;
    pending[what] = true;
    setTimeout(() => {
      pending[what] = false;
      if (!running) return;
      if (what === 'files') refreshFiles(); else refreshStatus();
    }, 100);
  }

  async function poll() {
    clearTimeout(pollTimer);
    if (!running) return;
    await refreshStatus();
    if (running) pollTimer = setTimeout(poll, PRINTING.has(state) ? 1000 : 2000);
  }

  async function refreshStatus() {
    try {
      const data = await api('GET', 'api/job');
      job = data;
      state = data.state || 'Unknown';
      if (statusAlert) clearError();
      if (streamDown) openStream();   // printpipe answers again: no need to wait for the timer
      showJob(data);
      if (!OFFLINE.has(state) && state !== 'Connecting') {
        const printer = await api('GET', 'api/printer?exclude=sd');
        addSample(printer.temperature || {});
      }
    } catch (e) {
      if (e.status === 409) addSample({});   // not connected any more
      else if (!isKeyError(e)) showError('Reading the status', e, true);
      drawPlot();
      return;
    }
    drawPlot();
  }

  // ---- connection and job -----------------------------------------------------------------
  function setPill(id, text, kind) {
    const pill = $(id);
    pill.textContent = text;
    pill.className = 'pill' + (kind ? ' ' + kind : '');
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return '–';
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor(s / 60) % 60;
    const two = (n) => String(n).padStart(2, '0');
    return h ? h + ':' + two(m) + ':' + two(s % 60) : m + ':' + two(s % 60);
  }

  function showJob(data) {
    const kind = OFFLINE.has(state) ? 'bad' : PRINTING.has(state) ? 'busy'
      : state === 'Operational' ? 'ok' : 'warn';
    setPill('printer-state', data.error ? state + ': ' + data.error : state, kind);
    $('connect').hidden = !OFFLINE.has(state);
    const file = data.job && data.job.file;
    $('job-file').textContent = file && file.name ? file.display || file.name : 'none selected';
    const progress = data.progress || {};
    const done = typeof progress.completion === 'number' ? progress.completion : null;
    $('job-progress').value = done === null ? 0 : done;
    $('job-percent').textContent = done === null ? '–' : done.toFixed(1) + ' %';
    $('job-elapsed').textContent = duration(progress.printTime);
    $('job-left').textContent = duration(progress.printTimeLeft);
    const printing = PRINTING.has(state);
    $('job-start').disabled = !(state === 'Operational' && file && file.path);
    $('job-pause').disabled = !printing;
    $('job-resume').disabled = state !== 'Paused';
    $('job-cancel').disabled = !(printing || state === 'Paused' || state === 'Pausing');
    for (const item of $('files').children) {
      item.classList.toggle('selected', !!(file && item.dataset.path === file.path));
    }
  }

  // ---- heaters and the plot -----------------------------------------------------------------
  function addSample(temps) {
    const now = Date.now() / 1000;
    const sample = {t: now, temps: {}};
    for (const [name, t] of Object.entries(temps)) {
      if (t && typeof t === 'object' && 'actual' in t) sample.temps[name] = [t.actual, t.target];
    }
    samples.push(sample);
    while (samples.length && samples[0].t < now - WINDOW) samples.shift();
    showHeaters(sample.temps);
  }

  let oneTool = true;
  const heaterLabel = (name) => name === 'bed' ? 'Bed' : name === 'chamber' ? 'Chamber'
    : name.startsWith('tool') ? (oneTool ? 'Hotend' : 'Hotend ' + name.slice(4)) : name;
  const degrees = (v) => typeof v === 'number' ? v.toFixed(1) + ' °C' : '–';

  function showHeaters(temps) {
    const names = Object.keys(temps).sort(heaterOrder);
    if (names.join() !== heaterNames) {
      heaterNames = names.join();
      oneTool = names.filter((n) => n.startsWith('tool')).length < 2;
      const body = $('heaters');
      body.replaceChildren();
      for (const name of names) body.append(heaterRow(name));
    }
    for (const name of names) {
      const row = document.querySelector('tr[data-heater="' + name + '"]');
      row.children[1].textContent = degrees(temps[name][0]);
      row.children[2].textContent = degrees(temps[name][1]);
    }
  }

  function heaterOrder(a, b) {
    const rank = (n) => n.startsWith('tool') ? 0 : n === 'bed' ? 1 : 2;
    return rank(a) - rank(b) || a.localeCompare(b);
  }

  function heaterRow(name) {
    const row = el('tr');
    row.dataset.heater = name;
    const label = el('th');
    label.scope = 'row';
    label.append(el('span', 'swatch c-' + name), heaterLabel(name));
    const form = el('form');
    const input = el('input');
    input.type = 'number';
    input.min = '0';
    input.max = String(HEATER_LIMIT);
    input.step = '1';
    input.required = true;
    input.id = 'target-' + name;
    input.setAttribute('aria-label', 'New target for ' + heaterLabel(name) + ' in °C');
    const set = el('button', '', 'Set');
    set.type = 'submit';
    const off = el('button', 'plain', 'Off');
    off.type = 'button';
    off.setAttribute('aria-label', 'Switch ' + heaterLabel(name) + ' off');
    form.append(input, set, off);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      setTarget(name, Number(input.value)).then(() => { input.value = ''; });
    });
    off.addEventListener('click', () => setTarget(name, 0));
    const cell = el('td');
    cell.append(form);
    row.append(label, el('td', '', '–'), el('td', '', '–'), cell);
    return row;
  }

  function setTarget(name, value) {
    const what = 'Setting the ' + heaterLabel(name) + ' target';
    if (name === 'bed') {
      return act(what, () => api('POST', 'api/printer/bed', {command: 'target', target: value}));
    }
    if (name.startsWith('tool')) {
      return act(what, () => api('POST', 'api/printer/tool',
        {command: 'target', targets: {[name]: value}}));
    }
    return act(what, () => api('POST', 'api/printer/command', {commands: ['M141 S' + value]}));
  }

  function cssColor(name) {
    const style = getComputedStyle(document.documentElement);
    const variable = name === 'bed' ? '--bed' : name === 'chamber' ? '--chamber'
      : '--h' + (Number(name.slice(4)) % 4);
    return style.getPropertyValue(variable).trim() || '#888';
  }

  function drawPlot() {
    const canvas = $('plot');
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const g = canvas.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const style = getComputedStyle(document.documentElement);
    const muted = style.getPropertyValue('--muted').trim();
    const line = style.getPropertyValue('--line').trim();
    let top = 50;
    for (const s of samples) for (const v of Object.values(s.temps)) {
      top = Math.max(top, v[0] || 0, v[1] || 0);
    }
    top = Math.ceil((top + 5) / 50) * 50;
    const left = 34;
    const bottom = height - 18;
    const now = Date.now() / 1000;
    const x = (t) => left + (width - left - 4) * (1 - (now - t) / WINDOW);
    const y = (v) => bottom - (bottom - 6) * (v / top);
    g.font = '11px system-ui, sans-serif';
    g.lineWidth = 1;
    g.fillStyle = muted;
    g.strokeStyle = line;
    const step = top > 200 ? 100 : 50;
    for (let v = 0; v <= top; v += step) {
      g.beginPath(); g.moveTo(left, y(v)); g.lineTo(width, y(v)); g.stroke();
      g.fillText(String(v), 2, y(v) + 4);
    }
    for (let m = 0; m <= 10; m += 2) {
      const px = x(now - m * 60);
      g.fillText(m ? '-' + m + ' min' : 'now', Math.min(px - 12, width - 26), height - 4);
    }
    const names = new Set();
    for (const s of samples) for (const n of Object.keys(s.temps)) names.add(n);
    for (const name of names) {
      g.strokeStyle = cssColor(name);
      for (const which of [1, 0]) {   // target dashed under actual
        g.setLineDash(which ? [5, 4] : []);
        g.lineWidth = which ? 1 : 2;
        g.beginPath();
        let drawing = false;
        for (const s of samples) {
          const v = s.temps[name];
          if (!v || typeof v[which] !== 'number') { drawing = false; continue; }
          if (drawing) g.lineTo(x(s.t), y(v[which])); else g.moveTo(x(s.t), y(v[which]));
          drawing = true;
        }
        g.stroke();
      }
    }
    g.setLineDash([]);
  }

  // ---- files ------------------------------------------------------------------------------
  const encodePath = (path) => path.split('/').map(encodeURIComponent).join('/');
  const size = (n) => n >= 1048576 ? (n / 1048576).toFixed(1) + ' MB'
    : n >= 1024 ? (n / 1024).toFixed(1) + ' kB' : n + ' B';

  function flatten(entries, out) {
    for (const entry of entries || []) {
      if (entry.type === 'folder') flatten(entry.children, out); else out.push(entry);
    }
    return out;
  }

  async function refreshFiles() {
    let data;
    try {
      data = await api('GET', 'api/files/local?recursive=true');
    } catch (e) {
      if (!isKeyError(e)) showError('Listing the files', e);
      return;
    }
    const files = flatten(data.files, []).sort((a, b) => (b.date || 0) - (a.date || 0));
    const list = $('files');
    list.replaceChildren(...files.map(fileItem));
    $('files-empty').hidden = files.length > 0;
    if (job) showJob(job);
  }

  function fileItem(file) {
    const item = el('li');
    item.dataset.path = file.path;
    const meta = [size(file.size || 0)];
    const analysis = file.gcodeAnalysis || {};
    if (analysis.estimatedPrintTime) meta.push('about ' + duration(analysis.estimatedPrintTime));
    item.append(el('span', 'name', file.path), el('span', 'meta', meta.join(' · ')));
    const url = 'api/files/local/' + encodePath(file.path);
    const actions = el('span', 'actions');
    item.append(actions);
    const button = (label, cls, fn) => {
      const b = el('button', cls, label);
      b.type = 'button';
      b.setAttribute('aria-label', label + ' ' + file.path);
      b.addEventListener('click', fn);
      actions.append(b);
    };
    button('Select', 'plain', () => act('Selecting ' + file.path,
      () => api('POST', url, {command: 'select'})));
    button('Print', '', () => act('Printing ' + file.path,
      () => api('POST', url, {command: 'select', print: true})));
    button('Delete', 'plain', () => {
      if (confirm('Delete ' + file.path + '?')) {
        act('Deleting ' + file.path, () => api('DELETE', url)).then(() => refreshSoon('files'));
      }
    });
    return item;
  }

  // ---- webcam and timelapses ---------------------------------------------------------------
  let camTimer = 0;
  let movieUrl = '';
  async function refreshCamera() {
    let cam = null;
    try { cam = (await api('GET', 'api/settings')).webcam; } catch (e) { cam = null; }
    const img = $('cam');
    const on = Boolean(cam && cam.webcamEnabled && (cam.streamUrl || cam.snapshotUrl));
    $('cam-card').hidden = !on;
    clearTimeout(camTimer);
    if (on && cam.streamUrl) img.src = cam.streamUrl;
    else if (on) {
      // no stream: a fresh snapshot every two seconds (the query defeats caches)
      const next = () => {
        if (!running) return;
        img.src = cam.snapshotUrl + (cam.snapshotUrl.includes('?') ? '&' : '?') + '_=' + Date.now();
        camTimer = setTimeout(next, 2000);
      };
      next();
    }
    refreshTimelapses();
  }

  async function refreshTimelapses() {
    let data;
    try { data = await api('GET', 'api/timelapse'); } catch (e) { return; }
    const movies = (data.files || []).slice().sort((a, b) => (b.date || 0) - (a.date || 0));
    $('tl-card').hidden = !data.enabled && movies.length === 0;
    $('tl-empty').hidden = movies.length > 0;
    $('timelapses').replaceChildren(...movies.map(movieItem));
  }

  function movieItem(movie) {
    const item = el('li');
    item.append(el('span', 'name', movie.name), el('span', 'meta', String(movie.size || '')));
    const link = el('a', 'link', 'Play');
    const path = 'downloads/timelapse/' + encodeURIComponent(movie.name);
    link.href = path;  // opened without the key it is refused: the click fetches it with the key
    link.setAttribute('aria-label', 'Play ' + movie.name);
    link.addEventListener('click', (event) => {
      event.preventDefault();
      act('Loading ' + movie.name, () => play(path, movie.name));
    });
    const actions = el('span', 'actions');
    actions.append(link);
    item.append(actions);
    return item;
  }

  async function play(path, name) {
    const headers = key ? {'X-Api-Key': key} : {};
    const response = await fetch(path, {headers, cache: 'no-store', credentials: 'omit',
      referrerPolicy: 'no-referrer'});
    if (!response.ok) throw new ApiError(response.status, name + ': ' + response.status);
    if (movieUrl) URL.revokeObjectURL(movieUrl);
    movieUrl = URL.createObjectURL(await response.blob());
    const video = $('tl-video');
    video.src = movieUrl;
    video.title = name;
    video.hidden = false;
    video.play().catch(() => { /* autoplay refused: the controls are there */ });
  }

  async function upload(files) {
    for (const file of files) {
      const form = new FormData();
      form.append('file', file, file.name);
      $('upload-status').textContent = 'Uploading ' + file.name + '…';
      const done = await act('Uploading ' + file.name, () => api('POST', 'api/files/local', form));
      $('upload-status').textContent = done ? 'Uploaded ' + file.name + '.' : '';
    }
    refreshSoon('files');
  }

  // ---- wiring -------------------------------------------------------------------------------
  function wire() {
    $('alert-close').addEventListener('click', clearError);
    $('key-form').addEventListener('submit', (e) => {
      e.preventDefault();
      key = $('key-input').value.trim();
      $('key-input').value = '';
      storeKey(key);
      clearError();
      start();
    });
    $('change-key').addEventListener('click', () => {
      stop();
      key = '';
      storeKey('');
      keyRefused(new ApiError(401, 'enter the new key'));
    });
    $('connect').addEventListener('click', () => act('Connecting',
      () => api('POST', 'api/connection', {command: 'connect'})));
    $('job-start').addEventListener('click', () => act('Starting the print',
      () => api('POST', 'api/job', {command: 'start'})));
    $('job-pause').addEventListener('click', () => act('Pausing',
      () => api('POST', 'api/job', {command: 'pause', action: 'pause'})));
    $('job-resume').addEventListener('click', () => act('Resuming',
      () => api('POST', 'api/job', {command: 'pause', action: 'resume'})));
    $('job-cancel').addEventListener('click', () => {
      if (confirm('Cancel the print?')) {
        act('Cancelling', () => api('POST', 'api/job', {command: 'cancel'}));
      }
    });
    $('gcode-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const line = $('gcode-line').value.trim();
      if (!line) return;
      const sent = await act('Sending ' + line,
        () => api('POST', 'api/printer/command', {commands: [line]}).then(() => true));
      $('gcode-status').textContent = sent ? 'Sent ' + line + '.' : '';
      if (sent) $('gcode-line').value = '';
    });
    const drop = $('drop');
    $('upload').addEventListener('change', (e) => {
      upload([...e.target.files]);
      e.target.value = '';
    });
    drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      drop.classList.remove('over');
      if (e.dataTransfer && e.dataTransfer.files.length) upload([...e.dataTransfer.files]);
    });
    window.addEventListener('resize', drawPlot);
    window.addEventListener('hashchange', () => {
      if (/apikey=/.test(location.hash)) { stop(); keyFromFragment(); start(); }
    });
  }

  // one printer of several, under its prefix: its name, and the way back to all of them
  const prefixed = /\/printers\/([a-z0-9-]{1,32})\/$/.exec(location.pathname);
  if (prefixed) {
    $('title').textContent = 'printpipe · ' + prefixed[1];
    document.title = prefixed[1] + ' · printpipe';
    $('farm-link').href = '../../';
    $('farm-link').hidden = false;
  }

  wire();
  key = storedKey();
  keyFromFragment();
  start();
})();
