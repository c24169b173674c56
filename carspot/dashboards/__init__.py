"""Web dashboard and weekly report export."""
