"""What several test modules share (a test module imports helpers from here, never from
another test module)."""
