#!/bin/bash
# Run probe.py jobs one after another (one core): each line of the queue file is "NAME JSON".
# Usage: explore/regime/queue.sh QUEUEFILE  (logs to explore/regime/logs/NAME.log)
cd "$(dirname "$0")/../.."
mkdir -p explore/regime/logs
while IFS= read -r line; do
  [ -z "$line" ] && continue
  case "$line" in \#*) continue;; esac
  name="${line%% *}"; json="${line#* }"
  .venv/bin/python explore/regime/probe.py "$name" "$json" > "explore/regime/logs/$name.log" 2>&1
done < "$1"
