#!/usr/bin/env bash
# Creates BeepGPT's topics (DESIGN.md §2) with explicit partition counts before any service starts,
# so nothing ever gets the broker's default. Idempotent: existing topics are left alone. The
# services would create missing topics too (same counts, from BEEPGPT_KAFKA_PARTITIONS); doing it
# here first means a consumer never races a producer to create its input.
# Runs in the apache/kafka image: `kafka-init` in docker-compose.yml.
set -euo pipefail

BOOTSTRAP="${BOOTSTRAP:-kafka:9092}"
PARTITIONS="${PARTITIONS:-6}"
REPLICATION="${REPLICATION:-1}"
KAFKA_TOPICS=/opt/kafka/bin/kafka-topics.sh

create() {  # name [extra kafka-topics.sh args...]
  local name=$1
  shift
  "$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$name" \
    --partitions "$PARTITIONS" --replication-factor "$REPLICATION" "$@"
}

# Keep in step with shared/beepgpt/topics.py (tests/deploy checks it). Every topic has a DLQ.
for topic in slack.messages conversations notifications.candidates notifications.sent feedback; do
  create "$topic"
  create "$topic.dlq"
done
# Latest preferences per user is all anyone needs: compaction keeps exactly that forever.
create user.preferences --config cleanup.policy=compact
create user.preferences.dlq

"$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --describe | grep -E '^Topic:' || true
