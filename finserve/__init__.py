"""finserve."""
