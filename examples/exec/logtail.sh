#!/bin/sh
# A log viewer: the last 20 lines of $LOG_FILE, then every new one as it is
# written (tail -F follows rotation). It never reads stdin; the bridge
# ends it (SIGTERM to its process group) when the page goes away.
log=${LOG_FILE:-/var/log/syslog}
exec tail -n 20 -F "$log" 2>&1
