// hubFollow(SockJS, url, transports, channel, timeoutMs): opens one hub
// session per transport (only that transport allowed), subscribes each to
// channel and resolves once every one is subscribed. Each then records
// every message (data by seq), every close event, and anything the hub
// protocol does not expect: a subscribed it did not ask for, a seq out of
// order or repeated. hubFollowed() returns the records. Evaluated in a
// page of the balancer's origin by TestClusterRollingHandOffBrowser.
function hubFollow(SockJS, url, transports, channel, timeoutMs) {
  window.hubSubs = [];
  return new Promise(function (resolve, reject) {
    var ready = 0;
    var timer = setTimeout(function () { reject(new Error('subscribe timed out: ' + ready + ' of ' + transports.length)); }, timeoutMs);
    transports.forEach(function (tr) {
      var st = { transport: tr, used: null, subscribed: 0, epoch: '', last: 0, data: {}, closes: [], errors: [] };
      window.hubSubs.push(st);
      var sock = new SockJS(url, null, { transports: [tr], timeout: 10000 });
      sock.onopen = function () {
        st.used = sock.transport;
        sock.send(JSON.stringify({ op: 'subscribe', channel: channel }));
      };
      sock.onmessage = function (e) {
        var m = JSON.parse(e.data);
        if (m.op === 'ping') {
          sock.send(JSON.stringify({ op: 'pong', id: m.id }));
        } else if (m.op === 'subscribed') {
          st.subscribed++;
          if (st.subscribed === 1) {
            st.epoch = m.epoch || '';
            st.last = m.seq;
            if (++ready === transports.length) {
              clearTimeout(timer);
              resolve(ready);
            }
          } else if (!(m.recovered === true && st.epoch === '' && st.last === 0 && m.seq === 0)) {
            st.errors.push('unasked ' + e.data);
          } else {
            st.epoch = m.epoch;
          }
        } else if (m.op === 'message') {
          if (m.seq !== st.last + 1) st.errors.push('seq ' + m.seq + ' after ' + st.last);
          st.last = Math.max(st.last, m.seq);
          st.data[m.seq] = JSON.stringify(m.data);
        } else {
          st.errors.push('unexpected ' + e.data);
        }
      };
      sock.onclose = function (e) { st.closes.push(e.code + ' ' + e.reason); };
    });
  });
}

function hubFollowed() {
  return window.hubSubs.map(function (s) {
    return { transport: s.transport, used: s.used, last: s.last, data: s.data, closes: s.closes, errors: s.errors };
  });
}
