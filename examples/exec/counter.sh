#!/bin/sh
# A counter in shell: counts to N (?n=N in the page's URL, default 10), one
# line a tick, then exits, which closes the session with c[3000,"Program
# exited"]. A message "reset" from the client starts again from 1.
#
# The bridge passes the page's query string in QUERY_STRING and runs no
# shell of its own: this is a script because its first line says so.
n=10
case "$QUERY_STRING" in
  n=[0-9]*) n=${QUERY_STRING#n=}; n=${n%%&*} ;;
esac
case "$n" in *[!0-9]*|'') n=10 ;; esac
[ "$n" -gt 1000 ] && n=1000
delay=${COUNTER_DELAY:-1}

# Messages arrive on stdin: a background reader turns "reset" into a
# marker file the loop checks (shell has no select).
mark=$(mktemp)
trap 'rm -f "$mark" "$mark.reset"' EXIT
while IFS= read -r line; do
  [ "$line" = reset ] && : > "$mark.reset"
done &

i=1
while [ "$i" -le "$n" ]; do
  echo "$i"
  sleep "$delay"
  if [ -e "$mark.reset" ]; then rm -f "$mark.reset"; i=0; echo "reset"; fi
  i=$((i + 1))
done
