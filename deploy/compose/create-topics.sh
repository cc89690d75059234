#!/usr/bin/env bash
# Creates BeepGPT's topics (docs/topics-and-contracts.md) with explicit partition counts and retention before any
# service starts, so nothing ever gets the broker's defaults. Idempotent: existing topics are left
# alone. The services would create missing topics too (from BEEPGPT_KAFKA_PARTITIONS); doing it
# here first means a consumer never races a producer to create its input.
# Runs in the apache/kafka image (no Python there): `kafka-init` in docker-compose.yml.
set -euo pipefail

BOOTSTRAP="${BOOTSTRAP:-kafka:9092}"
# At most this many partitions per topic: one local broker needs no production sizing.
PARTITIONS="${PARTITIONS:-6}"
REPLICATION="${REPLICATION:-1}"
KAFKA_TOPICS="${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}"

create() {  # name partitions [config=value...]; partitions capped at $PARTITIONS
  local name=$1 wanted=$2
  shift 2
  local partitions=$((wanted < PARTITIONS ? wanted : PARTITIONS))
  local configs=()
  for config in "$@"; do
    configs+=(--config "$config")
  done
  "$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$name" \
    --partitions "$partitions" --replication-factor "$REPLICATION" ${configs[@]+"${configs[@]}"}
}

# One line per topic, as shared/beepgpt/topics.py defines it (partitions, then configs);
# tests/deploy checks every line against it. Every topic has a DLQ (3 partitions, 14 days).
create slack.messages 12 retention.ms=604800000  # 7 days
create slack.messages.dlq 3 retention.ms=1209600000
create conversations 12 retention.ms=259200000  # 3 days
create conversations.dlq 3 retention.ms=1209600000
create notifications.candidates 12 retention.ms=259200000  # 3 days
create notifications.candidates.dlq 3 retention.ms=1209600000
create notifications.sent 6 retention.ms=2592000000  # 30 days
create notifications.sent.dlq 3 retention.ms=1209600000
# Latest preferences per user is all anyone needs: compaction keeps exactly that forever.
create user.preferences 6 cleanup.policy=compact
create user.preferences.dlq 3 retention.ms=1209600000
create feedback 6 retention.ms=7776000000  # 90 days
create feedback.dlq 3 retention.ms=1209600000
# Latest suggested topics per user (beepgpt suggest --publish); ingest's Slack app reads them whole.
create user.suggestions 6 cleanup.policy=compact
create user.suggestions.dlq 3 retention.ms=1209600000

"$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --describe | grep -E '^Topic:' || true
