#!/bin/sh
# Stand-in container (images/standin/Containerfile): says what it replaces and with which argv.
printf 'stand-in for %s: argv:' "${SM_INJECTOR_STANDIN_FOR:-an image not in the local store}"
for arg in "$@"; do printf ' [%s]' "${arg}"; done
printf '\n'
case "${SM_INJECTOR_STANDIN_KEEP_RUNNING:-}" in
true | 1)
  trap 'exit 0' TERM INT
  while :; do
    sleep 3600 &
    wait $!
  done
  ;;
esac
exit 0
