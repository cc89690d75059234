"""BeepGPT ingest: Slack events (Socket Mode or the HTTP Events API) and Slack exports → `slack.messages`.

Layout: `normalize` is the pure core (Slack event → contract or a reasoned refusal) shared by the
live service and `importer`; `intake` turns outcomes into buffered records; `publisher` moves them
to Kafka behind a bounded buffer; `dedup` decides which Slack deliveries are repeats;
`slack_app` and `listeners` are the Bolt app; `socket_mode` and `http_events` are its adapters;
`service` wires everything and `__main__` runs it.
"""
