"""Small middlewares, one concern each: language, bans, albums, metrics/logs, best-effort chat actions."""
