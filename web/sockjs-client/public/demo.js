// The demo page: one echo connection over a chosen transport, and one
// session per transport side by side. Plain ES5 on top of sockjsd.js.
(function () {
  'use strict';

  var TRANSPORTS = ['websocket', 'xhr-streaming', 'eventsource', 'iframe-eventsource', 'htmlfile',
    'iframe-htmlfile', 'xhr-polling', 'iframe-xhr-polling', 'jsonp-polling'];
  // Transports that work from another origin, through the iframe page or
  // script tags; the side-by-side panel may put them on an alias host.
  var ALIASABLE = {'iframe-eventsource': 1, 'iframe-htmlfile': 1, 'iframe-xhr-polling': 1, 'jsonp-polling': 1};
  // The demo's echo service: /echo with the server's ping on, so that
  // /metrics has each transport's round trip (sockjs_ping_rtt_seconds).
  var ECHO = '/demo';
  // With one transport forced there is nothing to fall back to, so it gets
  // this long (ms) to open instead of sockjs-client's default of about
  // twice the /info round trip, which a busy server or a page holding all
  // its connections can exceed.
  var FORCED_TIMEOUT = 10000;

  function $(id) { return document.getElementById(id); }
  function text(id, s) { $(id).textContent = s; }
  function num(v) { return v == null ? '–' : String(v < 10 ? v.toFixed(1) : Math.round(v)); }
  function ms(v) { return v == null ? '–' : num(v) + ' ms'; }

  function percentile(values, p) {
    if (!values.length) { return null; }
    var s = values.slice().sort(function (a, b) { return a - b; });
    return s[Math.max(0, Math.min(s.length - 1, Math.ceil(p / 100 * s.length) - 1))];
  }

  if (!window.SockJS) {
    $('client-missing').hidden = false;
  }

  // Logs keep their last LOG_ROWS lines.
  var LOG_ROWS = 100;
  // Round trips kept per transport for the percentiles.
  var KEEP = 200;

  // ---- Echo panel ----

  var conn = null;
  var pending = [];  // sent, not yet echoed: {row, t0}; the echo keeps order
  var sent = 0;
  var stats = {};    // transport -> {rtts, n, row}

  // record adds a round trip to its transport's p50/p95 row.
  function record(transport, rtt) {
    var st = stats[transport];
    if (!st) {
      st = stats[transport] = {rtts: [], n: 0, row: document.createElement('tr')};
      st.row.innerHTML = '<td></td><td class="num n"></td><td class="num p50"></td><td class="num p95"></td>';
      st.row.setAttribute('data-transport', transport);
      st.row.cells[0].textContent = transport;
      $('echo-stats-rows').appendChild(st.row);
    }
    st.n++;
    st.rtts.push(rtt);
    if (st.rtts.length > KEEP) { st.rtts.shift(); }
    st.row.querySelector('.n').textContent = String(st.n);
    st.row.querySelector('.p50').textContent = ms(percentile(st.rtts, 50));
    st.row.querySelector('.p95').textContent = ms(percentile(st.rtts, 95));
  }

  function setConnected(state) {
    var open = state === 'open';
    text('state', state);
    $('connect').disabled = state !== 'closed';
    $('transport').disabled = state !== 'closed';
    $('disconnect').disabled = state === 'closed';
    $('message').disabled = !open;
    $('send').disabled = !open;
    $('burst').disabled = !open;
  }

  // send sends msg; done, if given, runs when its echo comes back.
  function send(msg, done) {
    if (!conn || !conn.send(msg)) { return; }
    sent++;
    var tr = document.createElement('tr');
    tr.innerHTML = '<td class="num"></td><td class="msg"></td><td class="num rtt">…</td>';
    tr.cells[0].textContent = sent;
    tr.cells[1].textContent = msg;
    var log = $('log');
    log.insertBefore(tr, log.firstChild);
    while (log.rows.length > LOG_ROWS) { log.deleteRow(log.rows.length - 1); }
    pending.push({row: tr, t0: performance.now(), done: done});
  }

  $('connect-form').onsubmit = function (e) {
    e.preventDefault();
    var t = $('transport').value;
    pending = [];
    setConnected('connecting');
    text('in-use', '–');
    text('connect-time', '–');
    text('last-rtt', '–');
    text('echo-ping', '–');
    conn = SockJSD.connect({
      url: ECHO,
      transports: t ? [t] : undefined,
      timeout: t ? FORCED_TIMEOUT : undefined,
      onrtt: function (rtt) { text('echo-ping', ms(rtt)); },
      onopen: function (info) {
        setConnected('open');
        text('in-use', info.transport);
        text('connect-time', ms(info.connectMs));
      },
      onmessage: function () {
        var p = pending.shift();
        if (!p) { return; }
        var rtt = performance.now() - p.t0;
        p.row.querySelector('.rtt').textContent = ms(rtt);
        text('last-rtt', ms(rtt));
        if (conn && conn.transport) { record(conn.transport, rtt); }
        if (p.done) { p.done(); }
      },
      onclose: function (ev) {
        setConnected('closed');
        text('in-use', '–');
        text('state', 'closed (' + ev.code + ' ' + ev.reason + ')');
        conn = null;
      },
      onerror: function (err) {
        setConnected('closed');
        text('state', 'error: ' + err.message);
        conn = null;
      }
    });
  };

  $('disconnect').onclick = function () {
    if (conn) { conn.close(); }
  };

  $('send-form').onsubmit = function (e) {
    e.preventDefault();
    send($('message').value);
  };

  // burst sends 20 messages, each after the previous one came back, so the
  // round trips are not queued behind each other.
  $('burst').onclick = function () {
    var n = 0;
    function next() {
      if (n >= 20 || !conn || conn.readyState !== SockJSD.OPEN) { return; }
      n++;
      send('burst ' + n, next);
    }
    next();
  };

  // ---- Every transport at once ----

  // Browsers open at most 6 HTTP/1.1 connections per host, and every
  // streaming or polling transport holds one open, so 8 of them on one host
  // starve each other. On a loopback page the transports that work across
  // origins go to the other loopback name instead (?alias=host:port
  // chooses one; ?alias= turns it off).
  function aliasBase() {
    var m = /[?&]alias=([^&]*)/.exec(location.search);
    if (m) { return m[1] ? location.protocol + '//' + decodeURIComponent(m[1]) : null; }
    var port = location.port ? ':' + location.port : '';
    if (location.hostname === '127.0.0.1') { return location.protocol + '//localhost' + port; }
    if (location.hostname === 'localhost') { return location.protocol + '//127.0.0.1' + port; }
    return null;
  }

  var all = [];

  function row(name) {
    var tr = document.createElement('tr');
    tr.setAttribute('data-transport', name);
    tr.innerHTML = '<td></td><td class="state">connecting</td><td class="num connect">–</td>' +
      '<td class="num last wide">–</td><td class="num p50">–</td><td class="num p95">–</td><td class="num pings wide">0</td>';
    tr.cells[0].textContent = name;
    $('all-rows').appendChild(tr);
    return tr;
  }

  function startOne(name, base) {
    var tr = row(name);
    var c = {rtts: [], t0: null, timer: null, conn: null};
    function cell(cls, v) { tr.querySelector('.' + cls).textContent = v; }
    function ping() {
      if (c.t0 !== null || c.conn.readyState !== SockJSD.OPEN) { return; }
      c.t0 = performance.now();
      c.conn.send('ping ' + name);
    }
    c.conn = SockJSD.connect({
      url: base + ECHO,
      transports: [name],
      timeout: FORCED_TIMEOUT,
      onopen: function (info) {
        cell('state', 'open' + (info.transport === name ? '' : ' (' + info.transport + ')'));
        cell('connect', num(info.connectMs));
        ping();
        c.timer = setInterval(ping, 1000);
      },
      onmessage: function () {
        if (c.t0 === null) { return; }
        var rtt = performance.now() - c.t0;
        c.t0 = null;
        c.rtts.push(rtt);
        if (c.rtts.length > KEEP) { c.rtts.shift(); }
        cell('last', num(rtt));
        cell('p50', num(percentile(c.rtts, 50)));
        cell('p95', num(percentile(c.rtts, 95)));
        cell('pings', String(+tr.querySelector('.pings').textContent + 1));
      },
      onclose: function (ev) {
        clearInterval(c.timer);
        cell('state', 'closed (' + ev.code + ' ' + ev.reason + ')');
      },
      onerror: function (err) { cell('state', 'error: ' + err.message); }
    });
    return c;
  }

  $('all-start').onclick = function () {
    var alias = aliasBase();
    var here = location.protocol + '//' + location.host;
    $('all-rows').innerHTML = '';
    all = TRANSPORTS.map(function (name) {
      return startOne(name, alias && ALIASABLE[name] ? alias : here);
    });
    text('all-note', alias ? 'iframe and JSONP transports use ' + alias +
      ' so that the page stays within the browser\'s 6 connections per host.' :
      'All transports share this host; browsers allow 6 HTTP/1.1 connections per host, so some may wait.');
    $('all-start').disabled = true;
    $('all-stop').disabled = false;
  };

  $('all-stop').onclick = function () {
    all.forEach(function (c) {
      clearInterval(c.timer);
      c.conn.close();
    });
    all = [];
    $('all-start').disabled = false;
    $('all-stop').disabled = true;
  };
}());
