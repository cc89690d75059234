"""`beepgpt import`: Slack history (an export, or a message table) → the message table and/or Kafka.

`export` reads Slack's export format, `sources` picks the reader for a path, `history` folds
lines through the live normalizer into the table, `publish` sends it to `slack.messages`, and
`cli` is the command.
"""
