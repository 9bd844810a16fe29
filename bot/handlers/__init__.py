"""One router per feature. Each module has `create_router()`: a fresh Router per Dispatcher, so tests (and
several bots in one process) never share router state."""
