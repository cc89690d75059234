"""BeepGPT's notifier: decides, for each candidate, whether a person gets a DM now, later or never.

The pure core (`decisions`, `quiet_hours`, `budget`, `mrkdwn`, `dm`) holds the rules; `dedup`,
`rate_limit`, `budget_counter` and `held` keep the shared state in Redis; `slack_sender` and
`directory` talk to Slack; `service` wires them to Kafka.
"""
