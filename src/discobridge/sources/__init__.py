"""Sources read one AWS mechanism each and return endpoints; they never touch the snapshot."""
