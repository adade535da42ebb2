"""The process: composition root, CLI, runner, web server, logs, backup."""
