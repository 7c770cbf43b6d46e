"""segbench's runner side: config, runner, records, metrics, leaderboard and CLI."""

__version__ = "0.1.0"
