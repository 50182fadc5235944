"""MQTT telemetry: journal records out to a broker, remote stop/pause in.

The pieces, each in its own module: `urls` (broker address), `topics` (topic layout),
`schema` (payload models and JSON Schema), `mapping` (journal record → messages), `spool`
(bounded on-disk store-and-forward), `mqtt` (the aiomqtt connection), `remote` (stop/pause
commands), `discovery` (Home Assistant), and `runtime` (what `pumpctl run` wires in).
"""
