"""BeepGPT sessionizer: Slack messages into conversations with one Kaskada query (docs/conversations.md)."""
