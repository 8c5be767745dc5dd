#!/bin/sh
# A log viewer: the last 20 lines of $LOG_FILE, then every new one as it is
# written (tail -F follows rotation). Without LOG_FILE it follows the chat
# room of chat.sh (the same default file), which exists on any machine:
# open chat.html in another tab and watch its lines arrive here. It never
# reads stdin; the bridge ends it (SIGTERM to its process group) when the
# page goes away.
log=${LOG_FILE:-${CHAT_ROOM:-${TMPDIR:-/tmp}/sockjsd-chat.log}}
[ -n "${LOG_FILE:-}" ] || : >> "$log" || exit 1
exec tail -n 20 -F "$log" 2>&1
