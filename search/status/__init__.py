"""`python -m search.status [runs/<name>|NAME]`: where a search stands, from any shell that sees its
run folder; read only (search.status.state), in words or --json (search.status.cli)."""

from search.status.state import STATES, status

__all__ = ["status", "STATES"]
