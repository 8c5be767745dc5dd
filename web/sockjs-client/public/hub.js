// The hub panel: join a channel over a chosen transport and chat.
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var hub = null;
  if (!$('hub-connect') || !window.SockJSHub) { return; }
  $('hub-name').value = 'guest' + Math.floor(Math.random() * 1000);
  // The curl hint names this server, not a fixed address.
  Array.prototype.forEach.call(document.querySelectorAll('#hub-curl .host'), function (el) { el.textContent = location.host; });

  function log(text, cls) {
    var tr = document.createElement('tr'), td = document.createElement('td');
    td.textContent = text;
    td.className = 'msg' + (cls ? ' ' + cls : '');
    tr.appendChild(td);
    var list = $('hub-log');
    list.insertBefore(tr, list.firstChild);
    while (list.children.length > 100) { list.removeChild(list.lastChild); }
  }

  // joined: from Join to Leave, reconnections included, the transport and
  // channel stay as chosen.
  function setJoined(joined) {
    $('hub-connect').disabled = joined;
    $('hub-transport').disabled = joined;
    $('hub-channel').disabled = joined;
    $('hub-leave').disabled = !joined;
  }

  function setOpen(open) {
    $('hub-text').disabled = !open;
    $('hub-send').disabled = !open;
  }

  $('hub-connect').onclick = function () {
    var t = $('hub-transport').value, channel = $('hub-channel').value;
    $('hub-state').textContent = 'connecting';
    $('hub-rtt').textContent = '–';
    setJoined(true);
    hub = SockJSHub.connect({
      url: '/hub' + location.search,   // e.g. ?token=… when the server requires one
      transports: t ? [t] : undefined,
      reconnect: true,
      onrtt: function (rtt) { $('hub-rtt').textContent = (rtt < 10 ? rtt.toFixed(1) : Math.round(rtt)) + ' ms'; },
      onopen: function (info) {
        $('hub-state').textContent = 'open';
        $('hub-transport-used').textContent = info.transport;
        setOpen(true);
      },
      onmessage: function (m) {
        var d = m.data, who = d && d.name ? d.name + ': ' : '', text = d && d.text !== undefined ? d.text : JSON.stringify(d);
        log('#' + m.seq + ' ' + who + text, 'msg');
      },
      onevent: function (m) {
        if (m.op === 'error') { log('error ' + m.code + ': ' + m.message, 'err'); }
        if (m.op === 'subscribed') { log('joined ' + m.channel, 'info'); }
      },
      onclose: function (ev) {
        $('hub-state').textContent = ev.reconnecting ? 'reconnecting' : 'closed';
        $('hub-transport-used').textContent = '–';
        setOpen(false);
        if (!ev.reconnecting) { setJoined(false); }
      }
    });
    hub.subscribe(channel);
  };

  $('hub-leave').onclick = function () {
    if (hub) { hub.close(); hub = null; }
    setOpen(false);
    setJoined(false);
  };

  $('hub-form').onsubmit = function (e) {
    e.preventDefault();
    var text = $('hub-text').value;
    if (!hub || !text) { return; }
    hub.publish($('hub-channel').value, {name: $('hub-name').value, text: text});
    $('hub-text').value = '';
  };
}());
