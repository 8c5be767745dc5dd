// Shared by the example pages: connect to an exec service with the real
// sockjs-client and show its lines. The page's query string chooses:
//   ?service=/counter     the service's URL prefix (each page has a default)
//   ?transports=a,b       sockjs-client transports to allow (xhr-polling...)
//   anything else         passed on to the program as QUERY_STRING
// window.EX exposes the state to the browser tests.
window.EX = (function () {
  'use strict';
  var params = new URLSearchParams(location.search);
  var ex = {lines: [], transport: null, closed: null, sock: null};

  ex.start = function (defaultService, maxLines) {
    var service = params.get('service') || defaultService;
    var transports = params.get('transports');
    var pass = new URLSearchParams(params);
    pass.delete('service');
    pass.delete('transports');
    var qs = pass.toString();
    var url = service + (qs ? '?' + qs : '');
    var status = document.getElementById('status');
    var out = document.getElementById('out');
    var sock = new SockJS(url, null, transports ? {transports: transports.split(','), timeout: 10000} : {});
    ex.sock = sock;
    status.textContent = 'connecting to ' + url + '…';
    sock.onopen = function () {
      ex.transport = sock.transport;
      status.textContent = 'connected over ' + sock.transport;
    };
    sock.onmessage = function (e) {
      ex.lines.push(e.data);
      var li = document.createElement('li');
      li.textContent = e.data; // program output is text, never HTML
      out.appendChild(li);
      while (maxLines && out.children.length > maxLines) { out.removeChild(out.firstChild); }
      li.scrollIntoView({block: 'nearest'});
    };
    sock.onclose = function (e) {
      ex.closed = {code: e.code, reason: e.reason};
      status.textContent = 'closed: ' + e.code + ' ' + e.reason;
    };
    return sock;
  };

  ex.send = function (line) {
    if (ex.sock && ex.sock.readyState === SockJS.OPEN) { ex.sock.send(line); return true; }
    return false;
  };
  return ex;
}());
