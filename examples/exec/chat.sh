#!/bin/sh
# A line-oriented chat filter: every session's program appends what its
# client says, filtered, to one shared room file and shows everyone's lines
# with `tail -f`. One process per session, no server-side state but a file.
#
#   /nick NAME   change your name (letters, digits, _ and -, up to 16)
#   anything     said to the room, with a few words masked
#
# Safe with untrusted input: the bridge refuses messages with a newline
# (close 3003), so nobody can forge another line; the text is only ever
# printed with printf '%s'.
room=${CHAT_ROOM:-${TMPDIR:-/tmp}/sockjsd-chat.log}
: >> "$room" || exit 1
nick="guest$$"

# Everyone's lines from now on. tail is in our process group: the bridge
# ends it with us.
tail -n 0 -f "$room" &

say() { printf '%s\n' "$*" >> "$room"; }

echo "* welcome, $nick. /nick NAME to change your name"
say "* $nick joined"
while IFS= read -r line; do
  case "$line" in
    '') ;;
    '/nick '*)
      new=${line#/nick }
      case "$new" in
        *[!A-Za-z0-9_-]*|'') echo "* names are letters, digits, _ and -" ;;
        *) new=$(printf '%.16s' "$new"); say "* $nick is now $new"; nick=$new ;;
      esac ;;
    *)
      clean=$(printf '%s' "$line" | cut -c1-500 | sed -E 's/\b(darn|heck|drat)\b/****/gI')
      say "$nick: $clean" ;;
  esac
done
say "* $nick left"
