"""`pumpctl dashboard`: a live page of every pump that streams telemetry to a broker.

    layout   which topics to subscribe to, and which pump a topic belongs to
    board    every pump's current state, built from the MQTT messages it hears
    hub      fan-out to browsers: one bounded, newest-state-wins queue per viewer
    source   the one broker subscription (aiomqtt), and remote stop/pause publishing
    auth     the dashboard's own login, sessions and CSRF checks for remote commands
    server   the aiohttp app: page, Server-Sent Events, JSON API, health
    static/  the page's HTML, CSS and JavaScript (no CDN: labs are often air-gapped)
"""
